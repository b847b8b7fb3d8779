"""The digit metrics' own arithmetic on feature matrices and class labels; torch only.

FID, KID and the real-vs-real floor are shared with other metric plugins and live in
:mod:`ganforge_core.features`.

* ``precision_recall``: k-NN manifold precision and recall (Kynkäänniemi et al. 2019).
* ``kl_to_uniform``: KL(histogram || uniform over ``k`` classes), with 0 log 0 = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def kl_to_uniform(classes: Tensor, k: int) -> float:
    counts = torch.bincount(classes, minlength=k).double()
    p = counts[counts > 0] / counts.sum()
    return float((p * (p * k).log()).sum())


def _kth_distance(x: Tensor, k: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    return torch.cat([torch.cdist(chunk, x).kthvalue(k + 1, dim=1).values for chunk in x.split(1024)])


def _covered(queries: Tensor, anchors: Tensor, radii: Tensor) -> Tensor:
    """For each query: inside the k-NN ball of at least one anchor."""
    return torch.cat([(torch.cdist(chunk, anchors) <= radii).any(dim=1) for chunk in queries.split(1024)])


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    real, fake = real.double(), fake.double()
    k = min(k, len(real) - 1, len(fake) - 1)
    precision = _covered(fake, real, _kth_distance(real, k)).double().mean()
    recall = _covered(real, fake, _kth_distance(fake, k)).double().mean()
    return float(precision), float(recall)
