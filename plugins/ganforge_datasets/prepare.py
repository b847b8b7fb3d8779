"""``ganforge data prepare``: a folder of images or an NVlabs zip, decoded once into uint8 shards.

Images are decoded in worker processes (a multiprocessing pool: the work is PIL
decoding of independent files, so a pool of plain processes is all it needs), in
order, into shards of about :data:`SHARD_BYTES`; :mod:`ganforge_datasets.prepared`
describes the layout and reads it. Everything is written into a temporary directory
beside ``out`` that is renamed to ``out`` only at the end: an interrupted or failed
prepare leaves no ``out`` at all, and the temporary directory is removed (a killed
process can leave one behind, named ``.OUT.partial-PID``, without a manifest).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import time
import zipfile
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganforge_core import ConfigError, DataError
from ganforge_core.waiting import progress
from ganforge_datasets.folder import open_folder
from ganforge_datasets.images import Policy
from ganforge_datasets.nvlabs_zip import open_nvlabs_zip
from ganforge_datasets.prepared import FORMAT, LABELS, MANIFEST, VERSION, shard_name

SHARD_BYTES = 256 << 20
CHUNK = 64  # images per task sent to a worker
FOLDER_SIZE, FOLDER_CHANNELS = 64, 3  # the folder dataset's defaults


@dataclass
class Report:
    out: Path
    count: int
    shape: tuple[int, ...]
    classes: int
    shards: int
    skipped: list[str]
    seconds: float

    def line(self) -> str:
        shape = "x".join(map(str, self.shape))
        skipped = f"; skipped {len(self.skipped):,} unreadable files (first: {self.skipped[0]})" if self.skipped else ""
        rate = self.count / max(self.seconds, 1e-9)
        return (f"prepared {self.count:,} images ({shape} uint8, {self.classes:,} classes, {self.shards} shards) "
                f"in {self.out} in {self.seconds:.1f} s ({rate:,.0f} images/s){skipped}")


def open_source(src: Path, size: int | None, channels: int | None, policy: Policy) -> tuple[Any, list[str]]:
    """The SampleSource of ``src`` (a folder, or an NVlabs zip) and its class names."""
    if src.is_file() and (src.suffix.lower() == ".zip" or zipfile.is_zipfile(src)):
        return open_nvlabs_zip(src, size, channels, policy)
    if src.is_dir():
        source, classes, _ = open_folder(src, size or FOLDER_SIZE, channels or FOLDER_CHANNELS, policy, check=False)
        return source, classes
    raise DataError(f"{src} is neither a directory of images nor a zip file")


_worker_source: Any = None


def _start_worker(source: Any) -> None:
    global _worker_source
    _worker_source = source
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the pool, workers print nothing


def _decode(source: Any, indices: range) -> list[np.ndarray | str]:
    """Each image's pixels, or the one-line reason it cannot be read."""
    decoded: list[np.ndarray | str] = []
    for index in indices:
        try:
            decoded.append(source.decode(index))
        except DataError as exc:
            decoded.append(str(exc))
    return decoded


def _decode_in_worker(indices: range) -> list[np.ndarray | str]:
    return _decode(_worker_source, indices)


def _decoded(source: Any, workers: int) -> Generator[list[np.ndarray | str], None, None]:
    chunks = [range(start, min(start + CHUNK, len(source))) for start in range(0, len(source), CHUNK)]
    if workers <= 1:
        for chunk in chunks:
            yield _decode(source, chunk)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"  # fork: no re-imports
    with multiprocessing.get_context(method).Pool(workers, _start_worker, (source,)) as pool:
        yield from pool.imap(_decode_in_worker, chunks)  # leaving the with block terminates the workers


def _write(tmp: Path, source: Any, classes: list[str], src: Path, skip_bad: bool, workers: int) -> tuple[int, int, list[str]]:
    """Decode ``source`` into shards in ``tmp``; (images kept, shards, skipped)."""
    shape = tuple(source.shape)
    per_shard = max(1, SHARD_BYTES // int(np.prod(shape)))
    buffer = np.empty((min(per_shard, len(source)), *shape), dtype=np.uint8)
    labels = source.labels.numpy() if source.labels is not None else np.zeros(len(source), dtype=np.int64)
    kept: list[int] = []
    skipped: list[str] = []
    shards = filled = index = 0
    with progress(f"preparing {len(source):,} images", total=len(source)) as wait, \
            closing(_decoded(source, workers)) as decoded:  # closing it stops the workers, on any exit
        for chunk in decoded:
            for result in chunk:
                if isinstance(result, str):
                    if not skip_bad:
                        raise DataError(f"{result} (pass --skip-bad to skip unreadable files)")
                    skipped.append(result.removeprefix("dataset 'folder': ").removeprefix("dataset 'zip': "))
                else:
                    buffer[filled] = result
                    filled += 1
                    kept.append(index)
                    if filled == len(buffer):
                        np.save(tmp / shard_name(shards), buffer)
                        shards, filled = shards + 1, 0
                index += 1
            wait.advance(len(chunk))
    if not kept:
        raise DataError(f"none of the {len(source):,} images in {src} could be read (first: {skipped[0]})")
    if filled:
        np.save(tmp / shard_name(shards), buffer[:filled])
        shards += 1
    np.save(tmp / LABELS, labels[kept].astype(np.int64))
    counts = [per_shard] * (len(kept) // per_shard) + ([len(kept) % per_shard] if len(kept) % per_shard else [])
    manifest = {
        "format": FORMAT, "version": VERSION, "count": len(kept), "shape": list(shape), "dtype": "uint8",
        "shards": [{"file": shard_name(i), "count": n} for i, n in enumerate(counts)],
        "labels": LABELS, "classes": classes, "source": str(src), "skipped": len(skipped),
    }  # fmt: skip
    with (tmp / MANIFEST).open("w", encoding="utf-8") as handle:  # last: a directory without it is unfinished
        json.dump(manifest, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    return len(kept), shards, skipped


def prepare(src: Path, out: Path, *, size: int | None = None, channels: int | None = None,
            policy: Policy = "center-crop", skip_bad: bool = False, workers: int | None = None) -> Report:
    """Write ``src`` as a prepared dataset at ``out``, atomically; the report of what was written."""
    started = time.perf_counter()
    src, out = src.expanduser(), out.expanduser()
    if out.exists():
        raise ConfigError(f"--out {out} exists; prepare writes a new directory and never overwrites one")
    source, classes = open_source(src, size, channels, policy)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        count, shards, skipped = _write(tmp, source, classes, src, skip_bad, workers or os.cpu_count() or 1)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Report(out, count, tuple(source.shape), len(classes), shards, skipped, time.perf_counter() - started)

