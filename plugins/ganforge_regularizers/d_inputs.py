"""Regularizers that change what D sees: ``instance-noise`` and ``packing``."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import Tensor

from ganforge_core import Options, Regularizer


class InstanceNoiseOptions(Options):
    sigma: float = Field(0.1, gt=0, description="std of the Gaussian noise added to D's inputs at the start")
    anneal: Literal["linear", "cosine", "none"] = Field(
        "linear", description="how sigma falls to end_sigma over the run: linear, cosine (half a period), or not"
    )
    end_sigma: float = Field(0.0, ge=0, description="sigma at the end of the run when annealed")

    @model_validator(mode="after")
    def _falls(self) -> InstanceNoiseOptions:
        if self.end_sigma > self.sigma:
            raise ValueError("end_sigma must not exceed sigma")
        return self


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


class PackingOptions(Options):
    m: int = Field(
        2,
        ge=2,
        validate_default=True,
        description="samples packed into each D input (PacGAN's m); must divide --batch-size",
    )

    @field_validator("m")
    @classmethod
    def _divides_the_batch(cls, m: int, info: ValidationInfo) -> int:
        resolve = (info.context or {}).get("resolve")
        if resolve is not None and resolve.batch_size % m:
            raise ValueError(f"--batch-size {resolve.batch_size} is not divisible by m={m}; use a multiple of {m}")
        return m


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
