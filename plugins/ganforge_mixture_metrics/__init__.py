"""Mode-collapse metrics for Gaussian mixtures, as in PacGAN's Table 1.

On ``samples`` generated points:

* ``hq``: fraction of samples whose distance to the nearest mean is under
  ``3 * std`` (the Mahalanobis distance of an isotropic Gaussian);
* ``modes``: number of means that are nearest to at least one high-quality sample;
* ``reverse-kl``: KL(p || uniform), where p is the histogram of high-quality
  samples over their nearest means (0 log 0 = 0); log(K) when there are none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field

from ganforge_core import BuildContext, Dataset, Metric, Options, Register, hookimpl

if TYPE_CHECKING:
    from torch import Tensor


class ModeOptions(Options):
    samples: int = Field(2500, ge=1, le=1_000_000, description="generated samples to evaluate (PacGAN: 2,500)")
    threshold: float = Field(3.0, gt=0, description="high quality: within this many std of a mean")


def mode_statistics(points: Tensor, means: Tensor, std: float, threshold: float = 3.0) -> dict[str, float]:
    import torch  # here, so that importing the plugin (ganforge --help does) does not import torch

    distances = torch.cdist(points.double(), means.double())
    nearest_distance, nearest = distances.min(dim=1)
    high_quality = nearest_distance < threshold * std
    counts = torch.bincount(nearest[high_quality], minlength=len(means)).double()
    total = counts.sum().item()
    if total == 0:
        reverse_kl = math.log(len(means))
    else:
        p = counts[counts > 0] / total
        reverse_kl = float((p * (p * len(means)).log()).sum())
    return {
        "modes": float((counts > 0).sum()),
        "hq": float(high_quality.double().mean()),
        "reverse-kl": reverse_kl,
    }


class MixtureModes(Metric):
    def __init__(self, options: ModeOptions) -> None:
        self.options = options

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        points = generate(self.options.samples).reshape(-1, 2)
        return mode_statistics(points, dataset.info["means"], dataset.info["std"], self.options.threshold)


def build(options: ModeOptions, ctx: BuildContext) -> MixtureModes:
    return MixtureModes(options)


@hookimpl
def ganforge_register_metrics(register: Register) -> None:
    register(
        "mixture-modes",
        build,
        options=ModeOptions,
        summary="modes captured, high-quality fraction and reverse KL on 2D Gaussian mixtures",
        requires={"gaussian-mixture"},
        paper="Lin et al. 2018, 'PacGAN', Table 1",
    )
