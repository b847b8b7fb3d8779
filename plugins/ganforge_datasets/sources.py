"""What the dataset factories share: a :class:`~ganforge_core.datasource.SampleSource` as a Dataset.

Every file-backed dataset here (``folder``, ``zip``, ``prepared``) builds a source that
reads uint8 pixels by index; :func:`as_dataset` is the one place that turns it into
the ``Dataset`` a run trains on. The core then keeps it resident or streams it
(``--data-mode``): nothing is read here.
"""

from __future__ import annotations

from typing import Any

from ganforge_core import Dataset
from ganforge_core.datasource import SampleSource


def as_dataset(source: SampleSource, num_classes: int, info: dict[str, Any]) -> Dataset:
    """``source`` as the Dataset a run trains on (its labels are the source's)."""
    return Dataset(source=source, labels=source.labels, num_classes=num_classes, info=info)
