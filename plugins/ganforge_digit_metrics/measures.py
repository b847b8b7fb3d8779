"""The arithmetic of the feature metrics on feature matrices; torch only, no ganforge_core.

Shared by ``ganforge_digit_metrics`` and ``ganforge_inception``.

* ``fid``: Fréchet distance between Gaussians fitted to two feature sets.
* ``kid``: unbiased MMD² with the cubic polynomial kernel ``(x·y/d + 1)³``,
  averaged over random subsets (Bińkowski et al. 2018).
* ``precision_recall``: k-NN manifold precision and recall (Kynkäänniemi et al. 2019).
* ``kl_to_uniform``: KL(histogram || uniform over ``k`` classes), with 0 log 0 = 0.
* ``real_pool`` and ``over_halvings``: the real-vs-real floor. A pool of ``2m`` real samples
  is split into two random halves A and B; the fake set is scored against A and B against
  A, and both are averaged over several random halvings (one halving's floor is noisy:
  classifier FID on mnist-5k at 2,500 per half ranged 1.6 to 4.6 over 20 halvings).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def real_pool(samples: Tensor, wanted: int) -> Tensor:
    """A random subset of ``2m`` samples, ``m = min(wanted, N // 2)`` (at least 1): two halves of ``m``."""
    m = max(1, min(wanted, len(samples) // 2))
    return samples[torch.randperm(len(samples))[: 2 * m]]


def over_halvings(
    real: Tensor, fake: Tensor, splits: int, measure: Callable[[Tensor, Tensor, Tensor], dict[str, float]]
) -> dict[str, float]:
    """Mean of ``measure(real_a, real_b, fake)`` over ``splits`` random halvings of ``real`` (rows)."""
    m = len(real) // 2
    totals: dict[str, float] = {}
    for _ in range(splits):
        order = torch.randperm(len(real))
        values = measure(real[order[:m]], real[order[m : 2 * m]], fake)
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value
    return {key: total / splits for key, total in totals.items()}


def kl_to_uniform(classes: Tensor, k: int) -> float:
    counts = torch.bincount(classes, minlength=k).double()
    p = counts[counts > 0] / counts.sum()
    return float((p * (p * k).log()).sum())


def fid(a: Tensor, b: Tensor) -> float:
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root
    return float(value.clamp(min=0))


def kid(a: Tensor, b: Tensor, subsets: int = 10, subset_size: int = 1000) -> float:
    a, b = a.double(), b.double()
    m = min(subset_size, len(a), len(b))
    if m < 2:
        return math.nan
    d = a.shape[1]
    total = 0.0
    for _ in range(subsets):
        x = a[torch.randperm(len(a))[:m]]
        y = b[torch.randperm(len(b))[:m]]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3), ((y @ y.T / d + 1) ** 3), ((x @ y.T / d + 1) ** 3)
        off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        total += float(off - 2 * kxy.mean())
    return total / subsets


def fid_scores(real_a: Tensor, real_b: Tensor, fake: Tensor) -> dict[str, float]:
    """FID of ``fake`` against real half A, beside the real-vs-real floor (half B against A)."""
    return {"fid": fid(fake, real_a), "real-floor": fid(real_b, real_a), "n": float(len(fake))}


def kid_scores(real_a: Tensor, real_b: Tensor, fake: Tensor) -> dict[str, float]:
    """KID of ``fake`` against real half A, beside the real-vs-real floor (half B against A)."""
    return {"kid": kid(fake, real_a), "real-floor": kid(real_b, real_a), "n": float(len(fake))}


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
