"""The checks of a dataset: its samples, labels and renderer."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch

from ganforge_core.components import Dataset
from ganforge_core.datasource import to_model_scale
from ganforge_core.errors import GanforgeError
from ganforge_core.registry import Component
from ganforge_core.testing.objects import _check, _fail, _finite

# How far into each half of [-1, 1] an image dataset's samples must reach: data in [0, 1]
# (a missing 2p - 1) or in [-0.5, 0.5] fails, dark or low-contrast pictures pass.
IMAGE_REACH = 0.5
SOURCE_CHECKED = 1024  # samples of a SampleSource the check reads, spread over it


def check_dataset(dataset: Dataset, traits: Iterable[str]) -> None:
    """Finite samples stored as uint8 pixels or float32, of the declared modality (images span [-1, 1]
    in the model's scale); a source's reads have its shape and dtype; labels in range where there are any."""
    traits = set(traits)
    _check(isinstance(dataset, Dataset), f"a dataset factory returns ganforge_core.Dataset, got {type(dataset)}")
    _check(len(dataset) >= 1, "the dataset is empty")
    if dataset.samples is not None:
        stored = dataset.samples
    else:
        every = max(1, len(dataset) // SOURCE_CHECKED)
        indices = range(0, len(dataset), every)[:SOURCE_CHECKED]
        stored = dataset.read(indices)
        want = (len(indices), *dataset.shape)
        _check(
            tuple(stored.shape) == want and stored.dtype == getattr(torch, dataset.storage_dtype),
            f"the source's read of {len(indices)} samples returned {stored.dtype} {list(stored.shape)}, "
            f"its shape and dtype say torch.{dataset.storage_dtype} {list(want)}",
        )
    _check(
        stored.dtype in (torch.uint8, torch.float32),
        f"samples must be uint8 (pixels in [0, 255]) or float32 (the model's scale), got {stored.dtype}",
    )
    _check(
        stored.dtype == torch.float32 or "image" in traits,
        "uint8 samples are pixels: only a dataset with the trait 'image' stores them",
    )
    samples = to_model_scale(stored)
    _check(_finite(samples), "the dataset has non-finite samples")
    if "image" in traits:
        _check(samples.dim() == 4, f"an image dataset holds [N, C, H, W], got {list(samples.shape)}")
        low, high = float(samples.min()), float(samples.max())
        _check(low >= -1.0 and high <= 1.0, f"image samples must lie in [-1, 1], got [{low:.3g}, {high:.3g}]")
        _check(
            low <= -IMAGE_REACH and high >= IMAGE_REACH,
            f"image samples lie in [{low:.3g}, {high:.3g}]: an image dataset spans [-1, 1] (pixels p in [0, 1] "
            "become 2p - 1), which G's tanh output and every image metric assume",
        )
    if "vector" in traits:
        _check(samples.dim() == 2, f"a vector dataset holds [N, D], got {list(samples.shape)}")
    if "labelled" in traits:
        _check(dataset.labels is not None, "a dataset with the trait 'labelled' must return labels")
    if dataset.labels is not None:
        labels = dataset.labels
        _check(labels.shape == (len(dataset),), f"labels must have shape [{len(dataset)}], got {list(labels.shape)}")
        _check(dataset.num_classes > 0, "a dataset with labels sets num_classes")
        _check(
            0 <= int(labels.min()) and int(labels.max()) < dataset.num_classes,
            f"labels must lie in [0, {dataset.num_classes})",
        )


def check_renderer(component: Component, dataset: Dataset, n: int = 64) -> None:
    """The dataset's own renderer (``register(..., render=...)``) draws ``n`` of its samples into a file."""
    from ganforge_core.reporting import render_samples

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "samples.png"
        try:
            render_samples(dataset.take(range(min(n, len(dataset)))), path, info=dataset.info, dataset=component)
        except GanforgeError as exc:
            raise _fail(str(exc)) from None
        _check(path.stat().st_size > 0, f"{component.label}: its renderer wrote an empty {path.name}")
