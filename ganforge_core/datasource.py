"""The data-source contract: random access to a dataset's samples in their stored form.

A dataset plugin returns a :class:`~ganforge_core.components.Dataset`. Small data
is held as one tensor (``Dataset(samples=...)``); data of any size is a
:class:`SampleSource`, read by index, so the core can keep it resident on the
training device or stream it through worker processes, whichever fits.

Images are stored as ``uint8`` in ``[0, 255]`` and become float32 in ``[-1, 1]``
(``x / 127.5 - 1``) only on the training device; any other data (2-D points) is
stored as float32 already in the model's scale. No torch import at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor

StorageDtype = Literal["uint8", "float32"]


@runtime_checkable
class SampleSource(Protocol):
    """Samples by index, in their stored dtype, on the CPU.

    ``read`` is called in DataLoader worker processes, so a source must pickle
    cheaply (paths and small indexes, never the pixels) and open its files lazily
    in each process. It raises :class:`~ganforge_core.errors.DataError` naming
    the file for an unreadable sample. A source whose reads only copy bytes already
    laid out as pixels (memory-mapped shards, no decoding) may set ``mapped = True``:
    it is then made resident by this process alone, without worker processes, filled by a
    thread while training starts (a draw reads the rows not filled yet with ``read``), so its
    ``read`` must be safe to call from two threads at once.
    """

    shape: tuple[int, ...]
    """One sample's shape, ``(C, H, W)`` for images."""

    dtype: StorageDtype
    """``"uint8"`` for images in ``[0, 255]``, ``"float32"`` for data already in the model's scale."""

    labels: Tensor | None
    """int64 class labels, one per sample (held in memory), or None."""

    def __len__(self) -> int: ...

    def read(self, indices: Sequence[int]) -> Tensor:
        """The samples at ``indices`` as one ``[len(indices), *shape]`` tensor of ``dtype``."""
        ...


def to_model_scale(stored: Tensor, out: Tensor | None = None) -> Tensor:
    """Stored samples in the model's scale: uint8 pixels as ``x / 127.5 - 1`` in float32,
    float32 data unchanged (copied into ``out`` when given). Runs on ``stored``'s device."""
    import torch

    if stored.dtype == torch.uint8:
        scaled = torch.div(stored, 127.5, out=out) if out is not None else stored.div(127.5)
        return scaled.sub_(1.0)
    if out is None:
        return stored
    return out.copy_(stored)


class TensorSource:
    """A :class:`SampleSource` over samples already held as one CPU tensor (``Dataset(samples=...)``).

    It pickles its tensor; DataLoader workers forked on Linux share its memory instead.
    """

    def __init__(self, samples: Tensor, labels: Tensor | None = None) -> None:
        self.samples = samples
        self.labels = labels
        self.shape = tuple(samples.shape[1:])
        self.dtype: StorageDtype = "uint8" if str(samples.dtype) == "torch.uint8" else "float32"

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def read(self, indices: Sequence[int]) -> Tensor:
        import torch

        return self.samples.index_select(0, torch.as_tensor(indices, dtype=torch.long))
