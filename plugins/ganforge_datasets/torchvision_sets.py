"""``mnist``, ``fashion-mnist`` and ``cifar10`` in torchvision's on-disk layout.

The files are read from ``root`` by ganforge itself (idx files for the MNISTs,
the python pickle batches for CIFAR-10, through a restricted unpickler that only
rebuilds numpy arrays); torchvision is used only for ``download=true``, so its
layout is what is expected:

* ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
* ``ROOT/FashionMNIST/raw/...`` (the same four names)
* ``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}``

``root`` defaults to ``$GANFORGE_CACHE/data`` (else ``~/.cache/ganforge/data``).
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganforge_core import BuildContext, DataError, Dataset
from ganforge_core.waiting import progress
from ganforge_datasets.options import TorchvisionOptions

IDX_TYPES = {0x08: np.uint8}


def default_root() -> Path:
    cache = os.environ.get("GANFORGE_CACHE")
    return (Path(cache) if cache else Path.home() / ".cache" / "ganforge") / "data"


@dataclass(frozen=True)
class Source:
    name: str
    folder: str  # under root
    files: Callable[[str], list[str]]  # split -> files that must exist
    read: Callable[[Path, str], tuple[np.ndarray, np.ndarray]]  # folder, split -> uint8 [N,C,H,W], labels
    download: Callable[[Path, bool], object]  # root, train
    num_classes: int = 10


# -- MNIST idx files -----------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's format), optionally gzipped: magic 0, 0, type, dims; big-endian sizes."""
    candidates = [path, path.with_name(path.name + ".gz")]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise FileNotFoundError(path)
    opener = gzip.open if found.suffix == ".gz" else open
    try:
        with opener(found, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {found}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(f"{found} is not an idx file of unsigned bytes")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{found} holds {body.size} bytes, its header says {shape}")
    return body.reshape(shape)


def mnist_files(split: str) -> list[str]:
    prefix = "train" if split == "train" else "t10k"
    return [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]


def read_mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = mnist_files(split)
    images, labels = read_idx(folder / image_file), read_idx(folder / label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: {image_file} {images.shape} and {label_file} {labels.shape} do not match")
    return images[:, None], labels


# -- CIFAR-10 pickle batches -----------------------------------------------------


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing that could run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by python 3
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def cifar_files(split: str) -> list[str]:
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


def read_cifar(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    names = cifar_files(split)
    with progress("reading CIFAR-10 batches", total=len(names)) as wait:
        for name in names:
            images_in_batch, labels_in_batch = _read_cifar_batch(folder / name)
            images.append(images_in_batch)
            labels.append(labels_in_batch)
            wait.advance()
    return np.concatenate(images), np.concatenate(labels)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as handle:
            batch = _ArraysOnly(handle, encoding="latin1").load()
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        targets = np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {exc}") from None
    return data, targets


# -- downloads -------------------------------------------------------------------


def _torchvision(cls_name: str) -> Callable[[Path, bool], object]:
    def download(root: Path, train: bool) -> object:
        import torchvision.datasets

        return getattr(torchvision.datasets, cls_name)(str(root), train=train, download=True)

    return download


MNIST = Source("mnist", "MNIST/raw", mnist_files, read_mnist, _torchvision("MNIST"))
FASHION = Source("fashion-mnist", "FashionMNIST/raw", mnist_files, read_mnist, _torchvision("FashionMNIST"))
CIFAR10 = Source("cifar10", "cifar-10-batches-py", cifar_files, read_cifar, _torchvision("CIFAR10"))


def _present(folder: Path, names: list[str]) -> bool:
    return all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in names)


def make_loader(source: Source) -> Callable[[TorchvisionOptions, BuildContext], Dataset]:
    def load(options: TorchvisionOptions, ctx: BuildContext) -> Dataset:
        root = (options.root or default_root()).expanduser()
        folder = root / source.folder
        wanted = source.files(options.split)
        if not _present(folder, wanted) and options.download:
            try:
                source.download(root, options.split == "train")
            except Exception as exc:  # urllib, tarfile, checksum errors: all mean "no download"
                reason = " ".join(str(exc).split())[:200] or type(exc).__name__
                raise DataError(
                    f"dataset '{source.name}': download into {root} failed ({reason}); "
                    f"pass root=DIR holding {source.folder}/ instead"
                ) from None
        if not _present(folder, wanted):
            raise DataError(
                f"dataset '{source.name}': no {options.split} files in {folder} (expected {', '.join(wanted)}); "
                f"pass root=DIR holding {source.folder}/, or download=true when online"
            )
        try:
            images, labels = source.read(folder, options.split)
        except DataError as exc:
            raise DataError(f"dataset '{source.name}': {exc}") from None
        if len(images) == 0:
            raise DataError(f"dataset '{source.name}': {folder} holds no images")
        if labels.min() < 0 or labels.max() >= source.num_classes:
            raise DataError(f"dataset '{source.name}': labels outside 0..{source.num_classes - 1} in {folder}")
        samples = torch.from_numpy(np.array(images, dtype=np.uint8))  # a copy: idx bytes are read-only
        if options.size != samples.shape[-1]:
            resized = F.interpolate(samples.float(), size=options.size, mode="bilinear", align_corners=False)
            samples = resized.round().clamp(0, 255).to(torch.uint8)
        return Dataset(
            samples=samples,  # uint8: the core scales pixels to [-1, 1] on the training device
            labels=torch.from_numpy(labels.astype(np.int64)),
            num_classes=source.num_classes,
        )

    return load
