"""Minibatches a run draws from: the order of samples, and the device-resident sampler.

:class:`Order` is the sampling state both samplers share: each epoch a fresh
permutation drawn from its own generator, a position in it and the epoch count;
it is part of the checkpoint, so a resumed run sees exactly the batches an
uninterrupted one would have. :class:`BatchSampler` keeps the whole dataset on the
training device in its stored dtype (uint8 pixels become ``x / 127.5 - 1`` there);
:class:`~ganforge_core.streaming.StreamingSampler` reads batches in worker
processes. The engine draws from either through :class:`Batches`.

``mirror``: the order runs over ``2N`` indices, index ``i >= N`` being sample
``i - N`` flipped left-right (stylegan2-ada's ``--mirror``, which doubles the dataset):
each epoch shows every image once as it is and once mirrored, so about half of
each batch is flipped, on the device.

A memory-mapped source made resident is filled in the background
(:class:`~ganforge_core.residency.BackgroundFill`): until it is full, each draw reads the
rows of chunks not yet filled from the source itself and writes them into the gathered
batch, so the batches are those of a sampler whose samples were read whole first.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from ganforge_core.datasource import to_model_scale


class Batch(NamedTuple):
    samples: Tensor
    labels: Tensor | None


class Batches(Protocol):
    """What the engine draws real batches from (resident or streamed)."""

    device: torch.device
    batch_size: int

    @property
    def epoch(self) -> int:
        """Epochs begun (a permutation is drawn at the first batch of each)."""
        ...

    def draw(self, out: Batch | None = None) -> Batch:
        """The next batch as float32 in the model's scale on :attr:`device` (into ``out`` when given)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None:
        """Stop the worker processes reading ahead, if any (the run calls it at its end, however it ends)."""
        ...


class Order:
    """Shuffled batches of indices without replacement, a new permutation per epoch; drops the tail.

    ``shard=(rank, ranks)``: ``batch_size`` is the global batch, drawn from the same
    permutation on every rank, and this rank gets its contiguous slice of it
    (``batch_size // ranks`` indices). The state does not depend on the shard.
    """

    def __init__(self, count: int, batch_size: int, seed: int, shard: tuple[int, int] = (0, 1)) -> None:
        if batch_size > count:
            raise ValueError(f"batch size {batch_size} exceeds the dataset's {count} samples")
        rank, ranks = shard
        if batch_size % ranks or not 0 <= rank < ranks:
            raise ValueError(f"batch size {batch_size} does not split into {ranks} shards")
        self.count = count
        self.batch_size = batch_size
        share = batch_size // ranks
        self.slice = slice(rank * share, (rank + 1) * share) if ranks > 1 else None
        self.generator = torch.Generator().manual_seed(seed)
        self.order: Tensor | None = None
        self.position = 0
        self.epoch = 0

    def start(self) -> int:
        """Where the next batch starts in :attr:`order`; a spent permutation is followed by a new one."""
        if self.order is None or self.position + self.batch_size > self.order.numel():
            self.order = torch.randperm(self.count, generator=self.generator)
            self.position = 0
            self.epoch += 1
        start = self.position
        self.position += self.batch_size
        return start

    def shard(self, index: Tensor) -> Tensor:
        """This rank's slice of a global batch's indices."""
        return index if self.slice is None else index[self.slice]

    def next(self) -> Tensor:
        """This rank's indices of the next batch (CPU, int64)."""
        start = self.start()
        assert self.order is not None
        return self.shard(self.order[start : start + self.batch_size])

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": None if self.order is None else self.order.clone(),
            "position": self.position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Raises ValueError for an order that is no permutation of these samples, or a
        position past its end (a checkpoint of other data, or a tampered one)."""
        order, count = state["order"], self.count
        if order is not None and not torch.equal(order.sort().values, torch.arange(count)):
            raise ValueError(f"batches.order is not a permutation of the dataset's {count} samples")
        if order is not None and state["position"] > count:
            raise ValueError(f"batches.position {state['position']} is past the {count} samples")
        self.generator.set_state(state["generator"])
        self.order = None if order is None else order.cpu().clone()
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])


def mirrored(samples: Tensor, index: Tensor, count: int) -> Tensor:
    """``samples`` (drawn at ``index mod count``) with those at ``index >= count`` flipped left-right."""
    flip = (index >= count).view(-1, *([1] * (samples.dim() - 1)))
    return torch.where(flip, samples.flip(-1), samples)


class Filling(Protocol):
    """``samples`` being filled by another thread (see :class:`~ganforge_core.residency.BackgroundFill`)."""

    def ready(self) -> Tensor | None:
        """The chunks filled so far (a CPU bool per chunk), taken before the batch is gathered;
        None once every chunk is; raises the filler's error (DataError: its one line)."""
        ...

    def patch(self, gathered: Tensor, rows: Tensor, ready: Tensor) -> None:
        """Write the samples at ``rows`` whose chunk is not in ``ready`` into ``gathered`` (read from the source)."""
        ...

    def close(self) -> None:
        """Stop the filler and wait for it."""
        ...


class BatchSampler:
    """The dataset on the training device, in its stored dtype; batches in :class:`Order`'s order.

    ``samples`` is uint8 (pixels) or float32 (the model's scale); a drawn batch is float32
    in the model's scale, converted on the samples' device. ``filling``: ``samples`` are still
    being written by it; rows it has not written yet are read from its source at each draw
    (after the fill, a draw checks one attribute and takes the plain path).
    """

    def __init__(
        self,
        samples: Tensor,
        batch_size: int,
        seed: int,
        labels: Tensor | None = None,
        shard: tuple[int, int] = (0, 1),
        mirror: bool = False,
        filling: Filling | None = None,
    ) -> None:
        self.count = int(samples.shape[0])
        self._order = Order(self.count * (2 if mirror else 1), batch_size, seed, shard)
        self.samples = samples
        self.labels = labels
        self.batch_size = batch_size
        self.mirror = mirror
        self.device = samples.device
        self._device_order: Tensor | None = None  # the order's permutation on the device
        self._synced: Tensor | None = None  # the permutation _device_order is a copy of
        self._staging: Tensor | None = None  # uint8 rows gathered for an ``out=`` draw
        self._filling = filling

    @property
    def epoch(self) -> int:
        return self._order.epoch

    def next(self) -> Tensor:
        return self.draw().samples

    def _index(self) -> Tensor:
        """The next batch's indices on the device: the permutation is copied there once an epoch."""
        order = self._order
        start = order.start()
        if self._synced is not order.order:
            assert order.order is not None
            self._device_order, self._synced = order.order.to(self.device), order.order
        assert self._device_order is not None
        return order.shard(self._device_order[start : start + self.batch_size])

    def draw(self, out: Batch | None = None) -> Batch:
        """The next batch, with its labels when the sampler was given labels.

        With ``out``, the batch is written into those tensors instead of new ones.
        """
        ready = None
        if self._filling is not None:
            ready = self._filling.ready()  # before the gather: rows of a chunk filled after it are read again
            if ready is None:
                self._filling = None  # filled: the plain path from now on
        index = self._index()
        rows = index.remainder(self.count) if self.mirror else index
        stored, labels_out = self.samples, None if out is None else out.labels
        if out is not None and stored.dtype == torch.float32 and not self.mirror:
            torch.index_select(stored, 0, rows, out=out.samples)
            if ready is not None:
                self._patch(out.samples, rows, ready)
            samples = out.samples
        elif out is not None:
            if self._staging is None or self._staging.shape[0] != rows.numel():
                shape = (rows.numel(), *stored.shape[1:])
                self._staging = stored.new_empty(shape).contiguous(memory_format=_format_of(stored))
            gathered = torch.index_select(stored, 0, rows, out=self._staging)
            if ready is not None:
                self._patch(gathered, rows, ready)
            if self.mirror:
                gathered = mirrored(gathered, index, self.count)
            samples = to_model_scale(gathered, out=out.samples)
        else:
            gathered = stored.index_select(0, rows)
            if ready is not None:
                self._patch(gathered, rows, ready)
            if self.mirror:
                gathered = mirrored(gathered, index, self.count)
            samples = to_model_scale(gathered) if gathered.dtype == torch.uint8 else gathered
        if self.labels is None:
            return Batch(samples, None)
        if labels_out is not None:
            return Batch(samples, torch.index_select(self.labels, 0, rows, out=labels_out))
        return Batch(samples, self.labels.index_select(0, rows))

    def state_dict(self) -> dict[str, Any]:
        return self._order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order.load_state_dict(state)
        self._device_order = self._synced = None

    def _patch(self, gathered: Tensor, rows: Tensor, ready: Tensor) -> None:
        assert self._filling is not None
        self._filling.patch(gathered, rows, ready)

    def close(self) -> None:
        """Stop the background fill, if one is still running (the samples are read by no worker)."""
        filling = self._filling
        if filling is not None:
            filling.close()


def _format_of(tensor: Tensor) -> torch.memory_format:
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
