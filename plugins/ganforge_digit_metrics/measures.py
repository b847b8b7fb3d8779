"""The digit metrics' own arithmetic on feature matrices and class labels; torch only.

FID, KID and the real-vs-real floor are shared with other metric plugins and live in
:mod:`ganforge_core.features`.

* ``precision_recall``: k-NN manifold precision and recall (Kynkäänniemi et al. 2019).
* ``kl_to_uniform``: KL(histogram || uniform over ``k`` classes), with 0 log 0 = 0.
* ``spread``: the root-mean-square distance between two distinct rows, and
  ``class_spread``: that of each class's generated rows relative to its real rows,
  with the per-class recall beside it.
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


def spread(x: Tensor) -> float:
    """Root-mean-square distance between two distinct rows of ``x``: ``sqrt(2 * sum of unbiased variances)``.

    Exactly ``sqrt(mean over pairs i != j of |x_i - x_j|^2)``; 0 for identical rows, NaN under 2 rows.
    """
    if len(x) < 2:
        return float("nan")
    return float((2 * x.double().var(dim=0).sum()).sqrt())


def class_spread(
    real: Tensor, real_classes: Tensor, fake: Tensor, fake_classes: Tensor, k: int = 3
) -> dict[str, float]:
    """Within-class diversity of ``fake`` next to ``real``, classes as labelled (e.g. by a classifier).

    For every class with at least ``k + 1`` real and ``k + 1`` generated rows: the ratio
    ``spread(fake of c) / spread(real of c)`` (1 for samples as varied as the data, 0 when a
    class is one image) and the k-NN recall of its real rows by its generated rows. Returns
    ``spread-min`` (and its class, ``spread-min-class``), ``spread-mean``, ``class-recall``
    (the mean recall) and ``class-recall-min`` over those classes, ``classes-measured``, and
    ``spread-overall``, the same ratio over all rows regardless of class. With no class to
    measure, only ``classes-measured`` (0) and ``spread-overall``.
    """
    ratios: dict[int, float] = {}
    recalls: list[float] = []
    for c in sorted(set(fake_classes.tolist()) & set(real_classes.tolist())):
        real_c, fake_c = real[real_classes == c], fake[fake_classes == c]
        if min(len(real_c), len(fake_c)) <= k:
            continue
        ratios[c] = spread(fake_c) / spread(real_c)
        recalls.append(precision_recall(real_c, fake_c, k)[1])
    overall = spread(fake) / spread(real)
    if not ratios:  # no class has k + 1 samples of each: only what can be measured (never NaN)
        return {"classes-measured": 0.0, "spread-overall": overall}
    lowest = min(ratios, key=ratios.__getitem__)
    return {
        "spread-min": ratios[lowest],
        "spread-min-class": float(lowest),
        "spread-mean": sum(ratios.values()) / len(ratios),
        "class-recall": sum(recalls) / len(recalls),
        "class-recall-min": min(recalls),
        "classes-measured": float(len(ratios)),
        "spread-overall": overall,
    }
