"""``prepared``: the directory ``ganforge data prepare`` writes, read memory-mapped.

Layout (format version 1)::

    DIR/manifest.json        {"format": "ganforge-prepared", "version": 1, "count": N,
                              "shape": [C, H, W], "dtype": "uint8",
                              "shards": [{"file": "shard-00000.npy", "count": n}, ...],
                              "labels": "labels.npy", "classes": [...], "source": ..., "skipped": k}
    DIR/shard-00000.npy ...  uint8 [n, C, H, W], numpy's .npy format
    DIR/labels.npy           int64 [N], class indices into "classes"

The manifest is written last, inside a temporary directory that is renamed to DIR
only when everything is in it. Reading checks every field before any pixel is
touched (a hostile manifest cannot name a file outside DIR, or claim more images
than its shards hold) and maps the shards with ``np.load(mmap_mode="r")``, so
building the dataset reads only headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganforge_core import BuildContext, DataError, Dataset
from ganforge_core.datasource import StorageDtype
from ganforge_datasets.options import PreparedOptions
from ganforge_datasets.sources import as_dataset

FORMAT, VERSION = "ganforge-prepared", 1
MANIFEST = "manifest.json"
LABELS = "labels.npy"
SHARD = re.compile(r"shard-\d{5}\.npy")
MAX_MANIFEST_BYTES = 64 << 20
MAX_COUNT = 1 << 32
MAX_SIDE = 16_384


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npy"


def _bad(root: Path, what: str) -> DataError:
    return DataError(f"dataset 'prepared': {root / MANIFEST}: {what}; prepare it again with 'ganforge data prepare'")


def _count(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_COUNT


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of ``root``, every field checked; DataError (one line) for anything off."""
    path = root / MANIFEST
    if not root.is_dir():
        raise DataError(f"dataset 'prepared': {root} is not a directory; pass root=DIR written by 'ganforge data prepare'")
    if not path.is_file():
        raise DataError(f"dataset 'prepared': no {MANIFEST} in {root}: not a prepared dataset (or an unfinished one)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise _bad(root, f"larger than {MAX_MANIFEST_BYTES:,} bytes")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(root, f"not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad(root, f"not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise _bad(root, f"format version {str(manifest.get('version'))[:40]}, this ganforge reads version {VERSION}")
    count, shape, shards = manifest.get("count"), manifest.get("shape"), manifest.get("shards")
    if not _count(count):
        raise _bad(root, f"count must be a whole number in [1, {MAX_COUNT:,}], got {str(count)[:40]}")
    if not (isinstance(shape, list) and len(shape) == 3 and shape[0] in (1, 3)
            and all(type(s) is int and 1 <= s <= MAX_SIDE for s in shape[1:]) and type(shape[0]) is int):
        raise _bad(root, f"shape must be [1 or 3, H, W] with sides in [1, {MAX_SIDE:,}], got {str(shape)[:80]}")
    if manifest.get("dtype") != "uint8":
        raise _bad(root, f"dtype must be uint8, got {str(manifest.get('dtype'))[:40]}")
    if not (isinstance(shards, list) and shards and all(
        isinstance(s, dict) and isinstance(s.get("file"), str) and SHARD.fullmatch(s["file"]) and _count(s.get("count"))
        for s in shards
    )):
        raise _bad(root, "shards must be a list of {\"file\": \"shard-NNNNN.npy\", \"count\": n} inside the directory")
    if sum(s["count"] for s in shards) != count:
        raise _bad(root, f"its shards hold {sum(s['count'] for s in shards):,} images, not count={count:,}")
    classes = manifest.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise _bad(root, "classes must be a list of class names")
    if manifest.get("labels") not in (LABELS, None):
        raise _bad(root, f"labels must be {LABELS!r} or null, got {str(manifest.get('labels'))[:80]}")
    return manifest


def _mapped(path: Path, shape: tuple[int, ...], dtype: str, root: Path) -> np.memmap:
    """The .npy file at ``path`` memory-mapped, refused unless it holds exactly ``shape`` of ``dtype``."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"dataset 'prepared': {path.name} is missing from {root}; prepare it again") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"dataset 'prepared': {path} is not a readable .npy file (truncated?): {exc}") from None
    if array.shape != shape or array.dtype != np.dtype(dtype):
        raise DataError(
            f"dataset 'prepared': {path} holds {array.dtype} {list(array.shape)}, its manifest says {dtype} {list(shape)}"
        )
    return array


@dataclass
class PreparedSource:
    """Memory-mapped uint8 shards (a SampleSource); each process maps them itself, on first read."""

    root: Path
    files: list[str]
    counts: list[int]
    shape: tuple[int, ...]
    labels: torch.Tensor | None
    dtype: StorageDtype = field(default="uint8", init=False)
    mapped: bool = field(default=True, init=False)  # reads copy mapped bytes: made resident in-process, in the background
    _maps: list[np.memmap] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return sum(self.counts)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}

    def _shards(self) -> list[np.memmap]:
        if self._maps is None:
            self._maps = [
                _mapped(self.root / name, (n, *self.shape), "uint8", self.root)
                for name, n in zip(self.files, self.counts, strict=True)
            ]
        return self._maps

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        wanted = np.asarray(indices, dtype=np.int64)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        starts = np.cumsum([0, *self.counts])
        if wanted.size and wanted[-1] - wanted[0] == wanted.size - 1 and np.all(np.diff(wanted) == 1):
            return self._read_range(int(wanted[0]), int(wanted[-1]) + 1, starts)
        shard_of = np.searchsorted(starts, wanted, side="right") - 1
        out = np.empty((len(wanted), *self.shape), dtype=np.uint8)
        for shard, array in enumerate(self._shards()):
            rows = np.nonzero(shard_of == shard)[0]
            if rows.size:
                self._check_size(shard, array)
                out[rows] = array[wanted[rows] - starts[shard]]
        return torch.from_numpy(out)

    def _check_size(self, shard: int, array: np.memmap) -> None:
        """DataError for a shard truncated since it was mapped: touching its lost pages would be a
        SIGBUS (the process killed), not an exception."""
        path = self.root / self.files[shard]
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        if size < array.offset + array.nbytes:
            raise DataError(f"dataset 'prepared': {path} is truncated")

    def _read_range(self, begin: int, end: int, starts: np.ndarray) -> torch.Tensor:
        """Images ``begin:end`` (consecutive), read from the files straight into the result: one copy,
        and no mapped pages left in this process's memory (making a dataset resident reads it so)."""
        out = np.empty((end - begin, *self.shape), dtype=np.uint8)
        row = int(np.prod(self.shape))
        for shard, array in enumerate(self._shards()):
            low, high = max(begin, int(starts[shard])), min(end, int(starts[shard + 1]))
            if low < high:
                into = out[low - begin : high - begin].data.cast("B")
                with open(self.root / self.files[shard], "rb") as handle:
                    handle.seek(array.offset + (low - int(starts[shard])) * row)
                    if handle.readinto(into) != len(into):
                        raise DataError(f"dataset 'prepared': {self.root / self.files[shard]} is truncated")
        return torch.from_numpy(out)


def open_prepared(root: Path) -> tuple[PreparedSource, list[str]]:
    """The checked source of a prepared directory and its class names."""
    manifest = read_manifest(root)
    shape = tuple(manifest["shape"])
    files = [s["file"] for s in manifest["shards"]]
    counts = [s["count"] for s in manifest["shards"]]
    classes: list[str] = manifest["classes"]
    if manifest["labels"] is None:
        labels = torch.zeros(manifest["count"], dtype=torch.long)
    else:
        stored = _mapped(root / LABELS, (manifest["count"],), "int64", root)
        if stored.size and (stored.min() < 0 or stored.max() >= len(classes)):
            raise DataError(f"dataset 'prepared': {root / LABELS} has labels outside [0, {len(classes)})")
        labels = torch.from_numpy(np.array(stored))
    source = PreparedSource(root, files, counts, shape, labels)
    source._shards()  # every shard's header checked now, not in the middle of training
    return source, classes


def load_prepared(options: PreparedOptions, ctx: BuildContext) -> Dataset:
    if options.root is None:
        raise DataError("dataset 'prepared' needs root=DIR, a directory written by 'ganforge data prepare'")
    source, classes = open_prepared(options.root.expanduser())
    return as_dataset(source, len(classes), {"classes": classes})
