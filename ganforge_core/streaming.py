"""Streamed minibatches: batches read from a SampleSource in DataLoader worker processes.

The sampler keeps two :class:`~ganforge_core.batches.Order` s of the same seed: the
committed one advances only when the engine takes a batch (it is what the
checkpoint holds), and a copy of it runs ahead in the DataLoader, naming the
batches the workers read next. A resumed run therefore sees exactly the batches
an uninterrupted one would, however far the workers had read ahead. Each item a
worker reads is a whole batch (``source.read(indices)``, this rank's slice of the
global batch), in the source's stored dtype; it is pinned on CUDA, copied with
``non_blocking=True``, and converted to the model's scale on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.utils.data
from torch import Tensor

from ganforge_core.batches import Batch, Order, mirrored
from ganforge_core.datasource import SampleSource, to_model_scale
from ganforge_core.errors import DataError

STALL_SECONDS = 300  # no batch from the workers for this long is an error, not a hang


class Failed:
    """A read that raised DataError, carried back from a worker as a value (one line, no traceback)."""

    def __init__(self, message: str) -> None:
        self.message = message


class BatchReads(torch.utils.data.Dataset[Any]):
    """One item is one batch: the samples at a list of indices (mod ``count`` when mirrored)."""

    def __init__(self, source: SampleSource, count: int) -> None:
        self.source = source
        self.count = count

    def __getitem__(self, indices: list[int]) -> Tensor | Failed:  # type: ignore[override]
        try:
            return self.source.read([i % self.count for i in indices])
        except DataError as exc:
            return Failed(str(exc))


class _Ahead(torch.utils.data.Sampler[list[int]]):
    """The batches to read next: an Order's batches, forever (the DataLoader stops asking)."""

    def __init__(self, order: Order) -> None:
        self.order = order

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            yield self.order.next().tolist()


class StreamingSampler:
    """Batches of ``source`` in :class:`Order`'s order, read by ``workers`` processes (0: this one).

    ``labels`` (CPU, int64) are the source's, given for conditional runs; ``shard`` and
    ``mirror`` mean what they mean for :class:`~ganforge_core.batches.BatchSampler`.
    """

    def __init__(
        self,
        source: SampleSource,
        batch_size: int,
        seed: int,
        device: torch.device,
        labels: Tensor | None = None,
        shard: tuple[int, int] = (0, 1),
        mirror: bool = False,
        workers: int = 2,
        prefetch: int = 2,
    ) -> None:
        self.source = source
        self.count = len(source)
        self._args = (self.count * (2 if mirror else 1), batch_size, seed, shard)
        self._order = Order(*self._args)
        self.labels = labels
        self.batch_size = batch_size
        self.device = device
        self.mirror = mirror
        self.workers = workers
        self.prefetch = prefetch
        self._stream: Iterator[Any] | None = None

    @property
    def epoch(self) -> int:
        return self._order.epoch

    def next(self) -> Tensor:
        return self.draw().samples

    def start(self) -> None:
        """Start the workers now, reading the first batches while the run builds the rest of itself
        (the first draw starts them otherwise); they read on from the committed order's state."""
        if self._stream is None:
            self._stream = self._start()

    def _start(self) -> Iterator[Any]:
        ahead = Order(*self._args)
        ahead.load_state_dict(self._order.state_dict())
        loader = torch.utils.data.DataLoader(
            BatchReads(self.source, self.count),
            sampler=_Ahead(ahead),
            batch_size=None,
            num_workers=self.workers,
            prefetch_factor=self.prefetch if self.workers else None,
            pin_memory=self.device.type == "cuda",
            timeout=STALL_SECONDS if self.workers else 0,
            # The workers' base seed comes from this generator, not the training RNG stream.
            generator=torch.Generator().manual_seed(self._args[2]),
        )
        return iter(loader)

    def _read(self, expected: int) -> Tensor:
        assert self._stream is not None
        try:
            stored = next(self._stream)
        except RuntimeError as exc:  # a worker killed, or no batch within STALL_SECONDS
            self.close()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"data: the loader workers failed: {reason}") from None
        if isinstance(stored, Failed):
            self.close()
            raise DataError(stored.message)
        want = (expected, *self.source.shape)
        dtype = torch.uint8 if self.source.dtype == "uint8" else torch.float32
        if not isinstance(stored, Tensor) or tuple(stored.shape) != want or stored.dtype != dtype:
            self.close()
            got = f"{stored.dtype} {list(stored.shape)}" if isinstance(stored, Tensor) else type(stored).__name__
            raise DataError(f"data: the source's read returned {got}, expected {dtype} {list(want)}")
        return stored

    def draw(self, out: Batch | None = None) -> Batch:
        """The next batch (float32, the model's scale, on :attr:`device`), into ``out`` when given."""
        self.start()
        index = self._order.next()  # the batch the workers read first
        stored = self._read(index.numel()).to(self.device, non_blocking=True)
        if self.mirror:
            stored = mirrored(stored, index.to(self.device, non_blocking=True), self.count)
        samples = to_model_scale(stored, out=None if out is None else out.samples)
        if self.labels is None:
            return Batch(samples, None)
        labels = self.labels.index_select(0, index.remainder(self.count)).to(self.device, non_blocking=True)
        if out is not None and out.labels is not None:
            return Batch(samples, out.labels.copy_(labels))
        return Batch(samples, labels)

    def state_dict(self) -> dict[str, Any]:
        return self._order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the batches read ahead are dropped, the workers restart there."""
        self._order.load_state_dict(state)
        self.close()

    def close(self) -> None:
        """Stop the workers (the next draw starts them again)."""
        stream, self._stream = self._stream, None
        shutdown = getattr(stream, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
