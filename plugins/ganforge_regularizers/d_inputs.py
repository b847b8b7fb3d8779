"""Regularizers that change what D sees: ``instance-noise`` and ``packing``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ganforge_core import Regularizer
from ganforge_regularizers.options import InstanceNoiseOptions, PackingOptions


class InstanceNoise(Regularizer):
    """Gaussian noise on everything D sees, real and fake (Sønderby et al. 2017)."""

    def __init__(self, options: InstanceNoiseOptions) -> None:
        self.options = options

    def sigma(self, progress: float) -> float:
        o = self.options
        if o.anneal == "none":
            return o.sigma
        progress = min(max(progress, 0.0), 1.0)
        remaining = 1 - progress if o.anneal == "linear" else (1 + math.cos(math.pi * progress)) / 2
        return o.end_sigma + (o.sigma - o.end_sigma) * remaining

    def transform_d_input(self, x: Tensor, progress: float) -> Tensor:
        sigma = self.sigma(progress)
        return x + sigma * torch.randn_like(x) if sigma > 0 else x


class Packing(Regularizer):
    """PacGAN (Lin et al. 2018): D judges m samples at once, all real or all fake.

    Consecutive samples are concatenated along the first feature axis:
    ``[N, C, H, W] -> [N/m, m*C, H, W]`` and ``[N, D] -> [N/m, m*D]``, so D is
    built for ``d_input_shape`` and the loss sees N/m logits. A packed D sees the
    diversity of a set of samples, which penalises mode collapse.
    """

    def __init__(self, options: PackingOptions) -> None:
        self.m = options.m

    def d_input_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0] * self.m, *shape[1:])

    def transform_d_input(self, x: Tensor, progress: float) -> Tensor:
        n = x.shape[0]
        if n % self.m:
            raise ValueError(f"packing: a batch of {n} samples does not split into packs of m={self.m}")
        return x.reshape(n // self.m, self.m * x.shape[1], *x.shape[2:])
