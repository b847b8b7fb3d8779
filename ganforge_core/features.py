"""Feature metrics for any plugin: FID and KID beside a real-vs-real floor, and their provenance.

A metric that embeds samples with some network (ganforge's digit classifier,
Inception v3, a plugin's own) computes its numbers here:

* :func:`fid`: Fréchet distance between Gaussians fitted to two feature sets.
* :func:`kid`: unbiased MMD² with the cubic polynomial kernel ``(x·y/d + 1)³``,
  averaged over random subsets (Bińkowski et al. 2018).
* :func:`real_pool` and :func:`over_halvings`: the real-vs-real floor. A pool of
  ``2m`` real samples is split into two random halves A and B; the fake set is
  scored against A and B against A, and both are averaged over several random
  halvings (one halving's floor is noisy: classifier FID on mnist-5k at 2,500 per
  half ranged 1.6 to 4.6 over 20 halvings). :func:`fid_scores` and
  :func:`kid_scores` are the measures to average.
* :func:`write_provenance`: the Metric protocol returns numbers only, so a metric
  records what produced them (feature extractor, weights' hash, sample counts; the
  torch seed and time are added) in ``metrics-provenance.json``, one entry per
  metric name, overwritten by its latest evaluation.

Feature matrices are ``[N, d]`` tensors. torch is imported when a function runs,
not with this module, so a plugin's ``__init__`` may import it.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from ganforge_core.components import Dataset

PROVENANCE_FILE = "metrics-provenance.json"


def real_pool(samples: Tensor | Dataset, wanted: int) -> Tensor:
    """A random subset of ``2m`` samples, ``m = min(wanted, N // 2)`` (at least 1): two halves of ``m``.

    From a :class:`~ganforge_core.components.Dataset`, only those samples are read, as float32
    in the model's scale on the CPU (:meth:`~ganforge_core.components.Dataset.take`)."""
    import torch

    m = max(1, min(wanted, len(samples) // 2))
    picked = torch.randperm(len(samples))[: 2 * m]
    return samples[picked] if isinstance(samples, torch.Tensor) else samples.take(picked)


def over_halvings(
    real: Tensor, fake: Tensor, splits: int, measure: Callable[[Tensor, Tensor, Tensor], dict[str, float]]
) -> dict[str, float]:
    """Mean of ``measure(real_a, real_b, fake)`` over ``splits`` random halvings of ``real`` (rows)."""
    import torch

    m = len(real) // 2
    totals: dict[str, float] = {}
    for _ in range(splits):
        order = torch.randperm(len(real))
        values = measure(real[order[:m]], real[order[m : 2 * m]], fake)
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value
    return {key: total / splits for key, total in totals.items()}


def fid(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b`` (Heusel et al. 2017)."""
    import torch

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
    """Unbiased MMD² (cubic kernel) between ``a`` and ``b``, mean over random subsets; NaN under 2 rows."""
    import torch

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


def cache_dir() -> Path:
    """ganforge's cache: ``$GANFORGE_CACHE`` if set, else ``~/.cache/ganforge``."""
    value = os.environ.get("GANFORGE_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "ganforge"


def write_provenance(metric: str, fields: Mapping[str, Any], directory: Path | None = None) -> Path:
    """Add ``metric``'s entry (``fields`` plus ``seed`` and ``time``) to ``metrics-provenance.json``.

    The file lives in ``directory`` (default: :func:`cache_dir`). A file that cannot
    be written is skipped: provenance is a record, not a reason to lose the numbers.
    Returns the file's path.
    """
    import torch

    path = (directory or cache_dir()) / PROVENANCE_FILE
    try:
        records = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        records = {}
    records[metric] = {
        **fields,
        "seed": torch.initial_seed(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    temporary = path.with_name(f".{PROVENANCE_FILE}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, path)
    except OSError:
        pass
    return path
