"""Which batches a run draws from: the dataset resident on the training device, or streamed.

``--data-mode auto`` keeps the dataset resident when its stored (uint8) size fits
in :data:`HEADROOM` of the device's free memory (available RAM on the CPU, free
memory on CUDA), and streams it through DataLoader workers otherwise; a dataset
held as one tensor is resident on the CPU anyway (it is in memory already). The
choice is the run's first line: ``data: resident (0.98 GB uint8)``.

A memory-mapped source (``source.mapped``, as ``prepared``'s) made resident on the CPU is filled
in the background (:class:`BackgroundFill`): training starts at once, and until the
fill is done a batch's rows of chunks not yet filled are read from the source (a
gather from the map) at each draw: ``data: resident (1.97 GB uint8, filled in the
background)``.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Literal

import torch
import torch.utils.data

from ganforge_core import waiting
from ganforge_core.batches import Batches, BatchSampler
from ganforge_core.components import Dataset
from ganforge_core.datasource import SampleSource
from ganforge_core.errors import DataError
from ganforge_core.streaming import STALL_SECONDS, BatchReads, Failed, StreamingSampler

HEADROOM = 0.5  # the share of free memory a resident dataset may take
READ_CHUNK = 1024  # samples a source reads at once (one worker's task) when it is made resident
DataMode = Literal["auto", "resident", "streamed"]


@dataclass(frozen=True)
class Residency:
    resident: bool
    workers: int  # DataLoader worker processes when streamed
    nbytes: int
    dtype: str
    background: bool = False  # resident, filled by a thread while training starts (a mapped source)

    def describe(self) -> str:
        size = f"{self.nbytes / 1e9:.2f} GB" if self.nbytes >= 1e9 else f"{self.nbytes / 1e6:.1f} MB"
        size = f"{size} {self.dtype}"
        if self.resident:
            return f"data: resident ({size}{', filled in the background' if self.background else ''})"
        return f"data: streamed ({size}), {self.workers} worker{'s' if self.workers != 1 else ''}"


def default_workers() -> int:
    """min(4, CPUs - 1), at least 1: the training process keeps a core."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(1, min(4, cpus - 1))


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: CUDA's free memory, or the RAM available (MemAvailable) on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def choose(
    dataset: Dataset, device: torch.device, mode: DataMode = "auto", workers: int | None = None,
    free: int | None = None,
) -> Residency:
    """Resident or streamed; ``free`` (bytes) replaces the measured free memory of ``device``."""
    count = default_workers() if workers is None else workers
    if mode == "auto":
        held = dataset.samples is not None and device.type == "cpu"
        budget = HEADROOM * (free_memory(device) if free is None else free)
        resident = held or dataset.nbytes <= budget
    else:
        resident = mode == "resident"
    # On the CPU only: on CUDA a second thread's copies could run into a CUDA graph's capture, which
    # forbids other threads' work on the device while it records; there the source is read first.
    background = (
        resident and device.type == "cpu" and dataset.samples is None and bool(getattr(dataset.source, "mapped", False))
    )
    return Residency(resident, count, dataset.nbytes, dataset.storage_dtype, background)


def make_batches(
    dataset: Dataset,
    residency: Residency,
    device: torch.device,
    batch_size: int,
    seed: int,
    *,
    conditional: bool,
    shard: tuple[int, int] = (0, 1),
    mirror: bool = False,
    layout: torch.memory_format = torch.contiguous_format,
) -> Batches:
    """The run's sampler: the samples copied to ``device`` (resident; filled in the background for
    ``residency.background``) or a :class:`StreamingSampler`."""
    labels = dataset.labels if conditional else None
    if not residency.resident:
        streamed = StreamingSampler(
            dataset.as_source(), batch_size, seed, device, labels=labels, shard=shard, mirror=mirror,
            workers=residency.workers,
        )
        streamed.start()  # the workers read the first batches while the run builds its optimizers
        return streamed
    filling = None
    if residency.background:
        samples = empty_samples(dataset, device, layout)
        filling = BackgroundFill(dataset.as_source(), samples)
    else:
        samples = resident_samples(dataset, device, residency.workers, layout)
    return BatchSampler(
        samples, batch_size, seed, None if labels is None else labels.to(device), shard=shard, mirror=mirror,
        filling=filling,
    )


def empty_samples(dataset: Dataset, device: torch.device, layout: torch.memory_format) -> torch.Tensor:
    """An uninitialised tensor for all of ``dataset``'s samples on ``device``, in their stored dtype."""
    dtype = torch.uint8 if dataset.storage_dtype == "uint8" else torch.float32
    shape = (len(dataset), *dataset.shape)
    layout = layout if len(shape) == 4 else torch.contiguous_format
    return torch.empty(shape, dtype=dtype, device=device, memory_format=layout)


def resident_samples(
    dataset: Dataset, device: torch.device, workers: int = 0, layout: torch.memory_format = torch.contiguous_format
) -> torch.Tensor:
    """All samples on ``device`` in their stored dtype; a source is read in chunks straight into them,
    by ``workers`` DataLoader processes (a folder's images decode in parallel), in order. A source
    whose reads only copy mapped bytes (``source.mapped``, as ``prepared``'s) is read in this process:
    workers would add two copies and the IPC to the bytes read.

    ``layout`` (channels-last for a run that trains so) is that of the one copy made: samples a
    dataset holds on the CPU stay the dataset's own tensor for a CPU run (batches are gathered from
    them, in the layout of their first conv either way), never a second copy of the dataset."""
    held = dataset.samples
    if held is not None:
        if held.device == device:
            return held
        return held.to(device, memory_format=layout if held.dim() == 4 else torch.preserve_format)
    source = dataset.as_source()
    workers = 0 if getattr(source, "mapped", False) else workers
    samples = empty_samples(dataset, device, layout)
    chunks = [list(range(start, min(start + READ_CHUNK, len(dataset)))) for start in range(0, len(dataset), READ_CHUNK)]
    loader = torch.utils.data.DataLoader(
        BatchReads(source, len(dataset)),
        sampler=chunks,
        batch_size=None,
        num_workers=min(workers, len(chunks)),
        timeout=STALL_SECONDS if workers else 0,
        generator=torch.Generator().manual_seed(0),  # never the training RNG stream
    )
    with waiting.progress(f"reading {len(dataset):,} samples to the {device.type}", total=len(dataset)) as wait:
        for chunk, stored in zip(chunks, loader, strict=True):
            if isinstance(stored, Failed):
                raise DataError(stored.message)
            samples[chunk[0] : chunk[-1] + 1].copy_(stored)
            wait.advance(len(chunk))
    return samples


class BackgroundFill:
    """Fills ``samples`` (all of ``source``'s, uninitialised) from ``source`` in a thread, in chunks of
    ``chunk`` samples, in order: a chunk's flag in :attr:`done` is set only once its copy is complete
    (on CUDA, once the copy has run on the device). The :class:`BatchSampler` drawing from ``samples``
    reads the rows of chunks not done from ``source`` (:meth:`patch`). The thread's error (a truncated
    shard's DataError) is raised by :meth:`ready` at the next draw; :meth:`close` stops and joins it.

    For sources whose reads are cheap gathers from a map (``source.mapped``): the thread and the
    draws read the same files, and no second copy of the samples is made (one chunk in flight)."""

    def __init__(self, source: SampleSource, samples: torch.Tensor, chunk: int | None = None) -> None:
        self.source = source
        self.samples = samples
        self.chunk = READ_CHUNK if chunk is None else chunk
        count = len(source)
        self.done = torch.zeros(-(-count // self.chunk), dtype=torch.bool)  # written by the thread only
        self._complete = False  # every chunk done (set by the thread last)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="ganforge-resident-fill", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        samples, device = self.samples, self.samples.device
        _yield_to_training()
        try:
            for index in range(len(self.done)):
                if self._stop.is_set():
                    return
                begin, end = index * self.chunk, min((index + 1) * self.chunk, len(samples))
                stored = self.source.read(range(begin, end))
                if tuple(stored.shape) != tuple(samples[begin:end].shape) or stored.dtype != samples.dtype:
                    raise DataError(
                        f"data: the source's read returned {stored.dtype} {list(stored.shape)}, "
                        f"expected {samples.dtype} {[end - begin, *samples.shape[1:]]}"
                    )
                target = samples[begin:end]
                if device.type == "cuda":
                    with torch.cuda.device(device):
                        target.copy_(stored)
                        torch.cuda.current_stream(device).synchronize()  # on the device before it counts as done
                else:
                    target.numpy()[...] = stored.numpy()  # numpy's copy: one thread, the GIL released
                self.done[index] = True
            self._complete = True
        except BaseException as exc:  # raised at the next draw, in the training thread
            self._error = exc

    def ready(self) -> torch.Tensor | None:
        if self._error is not None:
            error = self._error
            if isinstance(error, DataError):
                raise DataError(str(error)) from None  # its one line, at every draw after it
            raise error
        if self._complete:
            self._thread.join()
            return None
        return self.done.clone()

    def patch(self, gathered: torch.Tensor, rows: torch.Tensor, ready: torch.Tensor) -> None:
        host = rows.cpu()
        missing = (~ready[host // self.chunk]).nonzero().squeeze(1)
        if missing.numel():
            read = self.source.read(host[missing].tolist())
            gathered[missing.to(gathered.device)] = read.to(gathered.device)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _yield_to_training() -> None:
    """Run the calling thread (the filler) at the lowest priority, nice 19 (Linux: a thread's own):
    where it shares a core with training, training gets nearly all of it and the draws read the
    rows not filled yet; on an idle core it fills at full speed."""
    if not sys.platform.startswith("linux"):  # elsewhere the id names a process, not this thread
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
