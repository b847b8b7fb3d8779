"""Device-resident minibatches: the whole dataset lives on the training device.

Each epoch is a fresh permutation drawn from the sampler's own generator, so
the order of batches is part of the checkpoint and a resumed run sees exactly
the batches an uninterrupted one would have.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor


class Batch(NamedTuple):
    samples: Tensor
    labels: Tensor | None


class BatchSampler:
    """Shuffled batches without replacement, a new permutation per epoch; drops the tail.

    ``shard=(rank, ranks)``: ``batch_size`` is the global batch, drawn from the same
    permutation on every rank, and this rank gets its contiguous slice of it
    (``batch_size // ranks`` samples). The state does not depend on the shard.
    """

    def __init__(
        self,
        samples: Tensor,
        batch_size: int,
        seed: int,
        labels: Tensor | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if batch_size > samples.shape[0]:
            raise ValueError(f"batch size {batch_size} exceeds the dataset's {samples.shape[0]} samples")
        rank, ranks = shard
        if batch_size % ranks or not 0 <= rank < ranks:
            raise ValueError(f"batch size {batch_size} does not split into {ranks} shards")
        self.samples = samples
        self.labels = labels
        self.batch_size = batch_size
        self._slice = slice(rank * (batch_size // ranks), (rank + 1) * (batch_size // ranks)) if ranks > 1 else None
        self.generator = torch.Generator().manual_seed(seed)
        self._order: Tensor | None = None
        self._position = 0
        self.epoch = 0

    def next(self) -> Tensor:
        return self.draw().samples

    def draw(self, out: Batch | None = None) -> Batch:
        """The next batch, with its labels when the sampler was given labels.

        With ``out``, the batch is written into those tensors instead of new ones.
        """
        if self._order is None or self._position + self.batch_size > self._order.numel():
            permutation = torch.randperm(self.samples.shape[0], generator=self.generator)
            self._order = permutation.to(self.samples.device)
            self._position = 0
            self.epoch += 1
        index = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        if self._slice is not None:
            index = index[self._slice]
        if out is not None:
            torch.index_select(self.samples, 0, index, out=out.samples)
            if self.labels is not None and out.labels is not None:
                torch.index_select(self.labels, 0, index, out=out.labels)
            return out
        labels = None if self.labels is None else self.labels.index_select(0, index)
        return Batch(self.samples.index_select(0, index), labels)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": None if self._order is None else self._order.cpu(),
            "position": self._position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Raises ValueError for an order that is no permutation of these samples, or a
        position past its end (a checkpoint of other data, or a tampered one)."""
        order, count = state["order"], self.samples.shape[0]
        if order is not None and not torch.equal(order.sort().values, torch.arange(count)):
            raise ValueError(f"batches.order is not a permutation of the dataset's {count} samples")
        if order is not None and state["position"] > count:
            raise ValueError(f"batches.position {state['position']} is past the {count} samples")
        self.generator.set_state(state["generator"])
        self._order = None if order is None else order.to(self.samples.device)
        self._position = int(state["position"])
        self.epoch = int(state["epoch"])
