"""What the dataset factories share: a :class:`~ganforge_core.datasource.SampleSource` as a Dataset.

Every file-backed dataset here (``folder``, ``zip``, ``prepared``) builds a source that
reads uint8 pixels by index; :func:`as_dataset` is the one place that turns it into
the ``Dataset`` a run trains on.
"""

from __future__ import annotations

from typing import Any

import torch

from ganforge_core import Dataset
from ganforge_core.datasource import SampleSource
from ganforge_core.waiting import progress

CHUNK = 256  # samples per read while a source is loaded whole


def as_dataset(source: SampleSource, num_classes: int, info: dict[str, Any]) -> Dataset:
    """``source`` as the Dataset a run trains on."""
    # TODO(data-core merge): return Dataset(source=source, labels=source.labels, num_classes=..., info=...)
    # once components.Dataset takes a source; until then its samples are read whole, as float32.
    n = len(source)
    samples = torch.empty((n, *source.shape), dtype=torch.float32)
    with progress(f"reading {n:,} images", total=n) as wait:
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            samples[start:stop] = source.read(range(start, stop)).float() / 127.5 - 1.0
            wait.advance(stop - start)
    return Dataset(samples=samples, labels=source.labels, num_classes=num_classes, info=info)
