"""The options of the regularizers whose code imports torch; importable without it."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ganforge_core import Annealing, Options, penalties


class SpectralNormOptions(Options):
    generator: bool = Field(False, description="also normalise G's layers")
    power_iterations: int = Field(1, ge=1, le=100, description="power iterations per forward pass")


class EMAOptions(Options):
    decay: float = Field(
        0.999, ge=0.0, lt=1.0, description="weight of the old average at each G step (0: the copy is G itself)"
    )
    start: int = Field(
        0, ge=0, le=10**9, description="G steps during which the copy follows G exactly before averaging begins"
    )
    ramp: int = Field(
        0,
        ge=0, le=10**9,
        description="G steps over which the average's half-life rises on a cosine from 0 to decay's (R3GAN); "
        "0: decay from the first step",
    )

    def decay_at(self, step: int) -> float:
        """The decay at G step ``step``: ``decay``, or during the ramp ``0.5 ** (1 / h)`` for the half-life
        ``h`` (in G steps) on its cosine from 0 to decay's half-life ``log 0.5 / log decay``."""
        if step >= self.ramp or self.decay == 0.0:
            return self.decay
        half_life = math.log(0.5) / math.log(self.decay) * (1 - math.cos(math.pi * step / self.ramp)) / 2
        return 0.5 ** (1 / half_life) if half_life > 0 else 0.0


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


class PackingOptions(Options):
    m: int = Field(
        2,
        ge=2, le=64,
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


class DiffAugmentOptions(Annealing):
    color: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="colour strength: brightness +-0.5s, saturation x[1-s, 1+s], contrast x[1-s/2, 1+s/2]; 0: off",
    )
    translation: float = Field(
        0.125, ge=0.0, le=0.5, description="largest shift as a fraction of the image side (paper: 1/8); 0: off"
    )
    cutout: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="side of the erased square as a fraction of the image side (paper: 1/2); 0: off",
    )

    @model_validator(mode="after")
    def _some_policy(self) -> DiffAugmentOptions:
        if not (self.color or self.translation or self.cutout):
            raise ValueError("every policy is off; give color, translation or cutout a value above 0")
        return self


class R1Options(Annealing):
    gamma: float = Field(10.0, ge=0, description="gamma: the penalty is gamma/2 * E ||grad D(x_real)||^2")
    every: int = Field(
        1,
        ge=1, le=1000,
        description="lazy regularisation: penalise every k-th D step, in a phase of its own, with k times the "
        "weight (StyleGAN2: 16)",
    )


class R2Options(R1Options):
    gamma: float = Field(10.0, ge=0, description="gamma: the penalty is gamma/2 * E ||grad D(G(z))||^2")


class GradientPenaltyOptions(penalties.GradientPenaltyOptions, Annealing):
    """The options of ``wgan-gp``'s own penalty, and annealing of its weight."""
