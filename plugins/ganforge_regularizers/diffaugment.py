"""``diffaugment``: differentiable augmentation of everything D sees (Zhao et al. 2020).

The same random transforms are applied to real and fake images, in both
phases, and they are differentiable, so G learns through them: D never sees an
un-augmented image, and G is not taught to produce augmented ones. Policies, in
the paper's order: colour (brightness, saturation, contrast), translation with
zero fill, cutout. Each draws its parameters per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ganforge_core import Regularizer
from ganforge_regularizers.options import DiffAugmentOptions


class DiffAugment(Regularizer):
    def __init__(self, options: DiffAugmentOptions) -> None:
        self.options = options

    def transform_d_input(self, x: Tensor, progress: float) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"diffaugment augments image batches [N, C, H, W]; got shape {list(x.shape)}")
        o = self.options
        strength = o.strength(progress)
        color, translation, cutout = (o.color * strength, o.translation * strength, o.cutout * strength)
        if color:
            x = random_colour(x, color)
        if translation:
            x = random_translation(x, translation)
        if cutout:
            x = random_cutout(x, cutout)
        return x


def _per_sample(x: Tensor) -> Tensor:
    """Uniform [0, 1) draws, one per sample, broadcastable over [N, C, H, W]."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)


def random_colour(x: Tensor, strength: float) -> Tensor:
    x = x + (_per_sample(x) - 0.5) * strength
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (1 + (2 * _per_sample(x) - 1) * strength) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (1 + (_per_sample(x) - 0.5) * strength) + mean


def _grid(x: Tensor) -> tuple[Tensor, Tensor]:
    """Row indices [1, H, 1] and column indices [1, 1, W] on x's device."""
    _, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    return rows, cols


def random_translation(x: Tensor, ratio: float) -> Tensor:
    """Shift each image by up to ``ratio`` of its side in each direction; uncovered pixels become 0."""
    n, c, h, w = x.shape
    reach_h, reach_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    rows, cols = _grid(x)
    source_rows = rows + torch.randint(-reach_h, reach_h + 1, (n, 1, 1), device=x.device)
    source_cols = cols + torch.randint(-reach_w, reach_w + 1, (n, 1, 1), device=x.device)
    inside = (source_rows >= 0) & (source_rows < h) & (source_cols >= 0) & (source_cols < w)
    flat_index = source_rows.clamp(0, h - 1) * w + source_cols.clamp(0, w - 1)  # [N, H, W]
    shifted = x.flatten(2).gather(2, flat_index.view(n, 1, h * w).expand(n, c, h * w))
    return shifted.view(n, c, h, w) * inside.unsqueeze(1).to(x.dtype)


def random_cutout(x: Tensor, ratio: float) -> Tensor:
    """Zero one square of side ``ratio`` of the image per sample, centred anywhere in the image."""
    n, _, h, w = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    rows, cols = _grid(x)
    top = torch.randint(0, h, (n, 1, 1), device=x.device) - size_h // 2
    left = torch.randint(0, w, (n, 1, 1), device=x.device) - size_w // 2
    erased = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return x * (~erased).unsqueeze(1).to(x.dtype)
