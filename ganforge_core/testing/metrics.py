"""The check of a metric: named, finite values."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

from ganforge_core.components import Dataset, Metric
from ganforge_core.testing.objects import _check


def check_metric(metric: Metric, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
    """``compute`` returns a non-empty dict of names to finite floats; returns it."""
    _check(isinstance(metric, Metric), f"a metric subclasses ganforge_core.Metric, got {type(metric).__name__}")
    values = metric.compute(generate, dataset)
    _check(isinstance(values, dict) and values, f"compute() must return a non-empty dict, got {values!r}")
    for key, value in values.items():
        _check(isinstance(key, str) and key, f"metric value names are non-empty strings, got {key!r}")
        _check(
            isinstance(value, float) and math.isfinite(value),
            f"metric value '{key}' must be a finite float, got {value!r}",
        )
    return values
