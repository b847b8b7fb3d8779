"""``ring-8`` and ``grid-25``: the 2D Gaussian mixtures of the PacGAN protocol.

ring-8: means (cos 2πk/8, sin 2πk/8) for k = 0..7, std 0.01 (note 2πk/8, not a
linspace to 2π, which would make two modes coincide). grid-25: means on
{-4,-2,0,2,4}², std 0.05. A fixed training set of 100,000 points, drawn from a
generator seeded by the ``data_seed`` option so the set is the same in every run.
Importing this module does not import torch: building a set does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from ganforge_core import BuildContext, Dataset, Options

if TYPE_CHECKING:
    import torch


class MixtureOptions(Options):
    n: int = Field(100_000, ge=100, le=10_000_000, description="points in the fixed training set")
    data_seed: int = Field(0, ge=0, lt=2**32, description="seed that draws the training set")


@dataclass(frozen=True)
class Mixture:
    name: str
    summary: str
    std: float
    means: Callable[[], torch.Tensor]


def ring_means() -> torch.Tensor:
    import torch

    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return torch.stack([angles.cos(), angles.sin()], dim=1).float()


def grid_means() -> torch.Tensor:
    import torch

    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    return torch.cartesian_prod(axis, axis)


RING_8 = Mixture("ring-8", "8 Gaussians on the unit circle, std 0.01 (PacGAN)", 0.01, ring_means)
GRID_25 = Mixture("grid-25", "25 Gaussians on a 5x5 grid of spacing 2, std 0.05 (PacGAN)", 0.05, grid_means)


def make_mixture(mixture: Mixture) -> Callable[[MixtureOptions, BuildContext], Dataset]:
    def build(options: MixtureOptions, ctx: BuildContext) -> Dataset:
        import torch

        generator = torch.Generator().manual_seed(options.data_seed)
        means = mixture.means()
        modes = torch.randint(len(means), (options.n,), generator=generator)
        points = means[modes] + mixture.std * torch.randn(options.n, 2, generator=generator)
        return Dataset(
            samples=points,
            labels=modes,
            num_classes=len(means),
            info={"means": means, "std": mixture.std},
        )

    return build
