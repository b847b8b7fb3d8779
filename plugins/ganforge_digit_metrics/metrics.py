"""The digit metrics and the classifier's features behind them (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge_core import Dataset, Metric
from ganforge_core.features import fid, fid_scores, kid_scores, over_halvings, real_pool, write_provenance
from ganforge_digit_metrics import classifier as clf
from ganforge_digit_metrics.measures import class_spread, kl_to_uniform, precision_recall

if TYPE_CHECKING:
    from ganforge_digit_metrics import ClassOptions, ClassSpreadOptions, FeatureOptions, StackedOptions

_LOADED: dict[Path, clf.Loaded] = {}


def load_classifier() -> clf.Loaded:
    """The cached classifier for the current ``$GANFORGE_CACHE``, loaded once per process."""
    directory = clf.cache_dir()
    if directory not in _LOADED:
        loaded = clf.load_or_train(directory)
        loaded.model.to(memory_format=torch.channels_last)  # see CHUNK
        _LOADED[directory] = loaded
    return _LOADED[directory]


# Digits per forward pass of the classifier. In channels-last, in chunks of 256, its features
# took 0.3-0.45x the time of plain 2,048-digit chunks on one CPU thread (2026-12-02, 4,096
# digits): the activations of a small chunk stay in the cache.
CHUNK = 256


def _features(model: clf.DigitClassifier, digits: Tensor) -> Tensor:
    """Features ``[N, 128]`` of ``[N, 1, 28, 28]`` digits, chunk by chunk in channels-last."""
    chunks = [model.features(c.contiguous(memory_format=torch.channels_last)) for c in digits.split(CHUNK)]
    return torch.cat(chunks)


def _as_digits(images: Tensor) -> Tensor:
    """``[N, C, H, W]`` -> ``[N*C, 1, 28, 28]``: every channel is one digit."""
    n, c = images.shape[:2]
    digits = images.float().reshape(n * c, 1, *images.shape[2:])
    if digits.shape[-2:] != (28, 28):
        digits = F.interpolate(digits, size=(28, 28), mode="bilinear", align_corners=False)
    return digits.clamp(-1, 1)


_SPLIT: dict[Path, tuple[Tensor, Tensor]] = {}


@torch.no_grad()
def split_features() -> tuple[Tensor, Tensor]:
    """Features ``[1000, 128]`` of the classifier's held-out digits and ``[4000, 128]`` of its training digits."""
    directory = clf.cache_dir()
    if directory not in _SPLIT:
        images, labels = clf.read_mnist_5k()
        train_rows, held_rows = clf.split(labels)
        model = load_classifier().model
        _SPLIT[directory] = (_features(model, images[held_rows]), _features(model, images[train_rows]))
    return _SPLIT[directory]


def compose(features: Tensor, n: int, channels: int) -> Tensor:
    """Features of ``n`` images of ``channels`` digits each, drawn from the rows of ``features``.

    One channel: ``n`` distinct rows. Several (Stacked MNIST): each channel an independent draw.
    """
    if channels == 1:
        return features[torch.randperm(len(features))[:n]]
    picks = torch.randint(len(features), (n, channels))
    return features[picks].reshape(n, -1)


def heldout_scores(fake: Tensor, channels: int, splits: int) -> dict[str, float]:
    """``heldout-fid`` and ``heldout-floor``: generated and held-out digits against the classifier's training digits.

    Both sets are ``n = min(1000, len(fake))`` strong and are scored against the same draw
    of ``n`` training digits; both numbers are averaged over ``splits`` such draws.
    """
    held, trained = split_features()
    n = min(len(held), len(fake))
    totals = {"heldout-fid": 0.0, "heldout-floor": 0.0}
    for _ in range(splits):
        reference = compose(trained, n, channels)
        totals["heldout-fid"] += fid(fake[torch.randperm(len(fake))[:n]], reference)
        totals["heldout-floor"] += fid(compose(held, n, channels), reference)
    return {key: value / splits for key, value in totals.items()}


@torch.no_grad()
def digit_outputs(images: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted digits ``[N, C]`` and features ``[N, C*128]`` of images in ``[-1, 1]``."""
    model = load_classifier().model
    n, c = images.shape[:2]
    features = _features(model, _as_digits(images))
    return model.head(features).argmax(1).reshape(n, c), features.reshape(n, -1)


def record_provenance(metric: str, n_real: int, n_fake: int) -> None:
    """Note what produced ``metric``'s latest numbers in the cache's provenance file."""
    loaded = load_classifier()
    fields = {
        "feature_extractor": f"{clf.NAME} (penultimate layer, {clf.FEATURES} features per channel)",
        "weights_sha256": loaded.sha256[:16],
        "classifier_held_out_accuracy": loaded.accuracy,
        "n_real": n_real,
        "n_fake": n_fake,
    }
    write_provenance(metric, fields, loaded.path.parent)


# -- metrics -----------------------------------------------------------------------


class DigitClasses(Metric):
    def __init__(self, options: ClassOptions) -> None:
        self.options = options

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        digits, _ = digit_outputs(generate(self.options.samples))
        record_provenance("digit-classes", 0, self.options.samples)
        pooled = digits.flatten()
        return {"classes": float(torch.bincount(pooled, minlength=10).gt(0).sum()), "kl": kl_to_uniform(pooled, 10)}


class StackedModes(Metric):
    def __init__(self, options: StackedOptions) -> None:
        self.options = options

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        digits, _ = digit_outputs(generate(self.options.samples))
        record_provenance("stacked-modes", 0, self.options.samples)
        modes = _modes(digits)
        total = 10 ** digits.shape[1]
        return {"modes": float(torch.bincount(modes, minlength=total).gt(0).sum()), "kl": kl_to_uniform(modes, total)}


def _modes(digits: Tensor) -> Tensor:
    """One class per image from its digits ``[N, C]``: the digit, or on Stacked MNIST the triple as a number."""
    weights = torch.tensor([10 ** (digits.shape[1] - 1 - i) for i in range(digits.shape[1])])
    return (digits * weights).sum(1)


class ClassSpread(Metric):
    """Diversity within each class the classifier sees, generated against real (``measures.class_spread``).

    Classes are the classifier's, for real and generated images alike, so conditional and
    unconditional runs are measured the same way.
    """

    def __init__(self, options: ClassSpreadOptions) -> None:
        self.options = options

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        real = dataset.take(torch.randperm(len(dataset))[: self.options.samples])
        real_digits, real_features = digit_outputs(real)
        fake_digits, fake_features = digit_outputs(generate(self.options.samples))
        record_provenance("class-spread", len(real), self.options.samples)
        return class_spread(real_features, _modes(real_digits), fake_features, _modes(fake_digits), self.options.k)


class FeatureMetric(Metric):
    name = ""

    def __init__(self, options: FeatureOptions) -> None:
        self.options = options

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        real = real_pool(dataset, self.options.samples)
        m = len(real) // 2
        _, real_features = digit_outputs(real)
        _, fake = digit_outputs(generate(m))
        record_provenance(self.name, 2 * m, m)
        values = over_halvings(real_features, fake, self.options.splits, self.measure)
        return values | self.extra(fake, real.shape)

    def extra(self, fake: Tensor, shape: torch.Size) -> dict[str, float]:
        """Numbers beside the halvings' (``heldout-*`` for FID); none by default."""
        return {}

    def measure(self, real_a: Tensor, real_b: Tensor, fake: Tensor) -> dict[str, float]:
        raise NotImplementedError


class ClassifierFID(FeatureMetric):
    name = "classifier-fid"

    def measure(self, real_a: Tensor, real_b: Tensor, fake: Tensor) -> dict[str, float]:
        return fid_scores(real_a, real_b, fake)

    def extra(self, fake: Tensor, shape: torch.Size) -> dict[str, float]:
        if tuple(shape[-2:]) != (28, 28):
            return {}
        return heldout_scores(fake, shape[1], self.options.splits)


class ClassifierKID(FeatureMetric):
    name = "classifier-kid"

    def measure(self, real_a: Tensor, real_b: Tensor, fake: Tensor) -> dict[str, float]:
        return kid_scores(real_a, real_b, fake)


class PrecisionRecall(FeatureMetric):
    name = "precision-recall"

    def measure(self, real_a: Tensor, real_b: Tensor, fake: Tensor) -> dict[str, float]:
        k = self.options.k  # type: ignore[attr-defined]
        precision, recall = precision_recall(real_a, fake, k)
        floor_precision, floor_recall = precision_recall(real_a, real_b, k)
        return {
            "precision": precision,
            "recall": recall,
            "real-floor-precision": floor_precision,
            "real-floor-recall": floor_recall,
        }
