"""``metrics-provenance.json``: what produced each feature metric's latest numbers.

Shared by the metric plugins (``ganforge_digit_metrics``, ``ganforge_inception``): the
Metric protocol returns numbers only, so each metric writes here, one entry per metric
name, overwritten by its latest evaluation, the feature extractor, its weights' sha256,
the numbers of real and generated samples and the torch seed the evaluation ran under.
No ganforge_core import.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ganforge_digit_metrics.classifier import cache_dir

FILE = "metrics-provenance.json"


def record(metric: str, fields: Mapping[str, Any], directory: Path | None = None) -> Path:
    """Add ``metric``'s entry (``fields`` plus ``seed`` and ``time``) to the provenance file.

    The file lives in ``directory`` (default: ``$GANFORGE_CACHE``, else ``~/.cache/ganforge``).
    A file that cannot be written is skipped: provenance is a record, not a reason to lose
    the numbers. Returns the file's path.
    """
    path = (directory or cache_dir()) / FILE
    try:
        records = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        records = {}
    records[metric] = {
        **fields,
        "seed": torch.initial_seed(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    temporary = path.with_name(f".{FILE}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, path)
    except OSError:
        pass
    return path
