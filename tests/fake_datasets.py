"""Tiny datasets in the on-disk formats ganforge reads, written by the tests themselves.

``write_fake_root(root)`` fills one directory with all of them, which is what the
``root`` option of ``mnist``, ``fashion-mnist``, ``cifar10`` and ``folder`` expects:

* ``MNIST/raw`` and ``FashionMNIST/raw``: idx files (LeCun's ubyte format), train and t10k;
* ``cifar-10-batches-py``: python pickle batches ``data_batch_1..5`` and ``test_batch``;
* ``class-a/``, ``class-b/``: PNG images, so the same root is a two-class ``folder``;
* ``manifest.json``, ``shard-00000.npy``, ``labels.npy``: those images prepared, so the root is
  a ``prepared`` dataset too; ``nvlabs.zip``: a ``zip`` dataset (``FAKE_ZIP``).
"""

from __future__ import annotations

import atexit
import gzip
import pickle
import shutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

PER_SPLIT = 40  # images per MNIST split and per CIFAR batch


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file: two zero bytes, type 0x08 (unsigned byte), the number of dims, big-endian sizes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fake_mnist(raw: Path, seed: int = 0, gz: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The four idx files under ``raw``; returns the train images and labels written."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    written = None
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (PER_SPLIT, 28, 28), dtype=np.uint8)
        labels = (np.arange(PER_SPLIT) % 10).astype(np.uint8)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
        written = written or (images, labels)
    assert written is not None
    return written


def write_fake_cifar10(folder: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five training batches and a test batch as CIFAR-10's python pickles; returns batch 1."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    first = None
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, (PER_SPLIT, 3072), dtype=np.uint8)
        labels = [int(i % 10) for i in range(PER_SPLIT)]
        with (folder / name).open("wb") as handle:
            # Protocol 2, as the published (python 2) batches are.
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": []}, handle, protocol=2)
        first = first or (data, np.array(labels))
    assert first is not None
    return first


def write_fake_images(root: Path, classes: tuple[str, ...] = ("class-a", "class-b"), per_class: int = 6) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (20 + index, 24, 3), dtype=np.uint8)  # not square: cropped
            Image.fromarray(pixels).save(root / name / f"{i}.png")


FAKE_ZIP = "nvlabs.zip"


def write_fake_prepared_and_zip(root: Path) -> None:
    """``root``'s images prepared into ``root`` itself, and an NVlabs zip of 12 labelled PNGs."""
    import io
    import json
    import zipfile

    from PIL import Image

    from ganforge_datasets.prepare import prepare

    prepare(root, root / "staging", size=16, workers=1)
    for path in (root / "staging").iterdir():
        path.rename(root / path.name)
    (root / "staging").rmdir()
    rng = np.random.default_rng(3)
    with zipfile.ZipFile(root / FAKE_ZIP, "w") as archive:
        for i in range(12):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, format="PNG")
            archive.writestr(f"00000/img{i:08d}.png", buffer.getvalue())
        archive.writestr("dataset.json", json.dumps({"labels": [[f"00000/img{i:08d}.png", i % 2] for i in range(12)]}))


def write_fake_root(root: Path) -> Path:
    write_fake_mnist(root / "MNIST" / "raw", seed=1)
    write_fake_mnist(root / "FashionMNIST" / "raw", seed=2, gz=True)
    write_fake_cifar10(root / "cifar-10-batches-py")
    write_fake_images(root)
    write_fake_prepared_and_zip(root)
    return root


@cache
def shared_fake_root() -> Path:
    """One fake root per test session, for the generic contract tests (``support.SMALL_VALUES``)."""
    root = Path(tempfile.mkdtemp(prefix="ganforge-fake-data-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return write_fake_root(root)
