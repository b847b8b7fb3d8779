"""Metrics for digit datasets, computed with ganforge's own cached MNIST classifier.

``digit-classes`` and ``stacked-modes`` count the classes the classifier sees in
generated samples; ``classifier-fid``, ``classifier-kid`` and ``precision-recall``
compare its penultimate (128-unit) features of generated and real images. Each
channel of an image is classified as one digit, so on Stacked MNIST a sample is
a triple of digits and its features are the three channels' features side by side.

Feature metrics are reported beside a floor: the same statistic between two
disjoint halves of the real data, each as large as the generated set, so the
numbers can be read against what perfect samples would score. Both the score
(against half A) and the floor (half B against A) are averaged over ``splits``
random halvings: one halving's floor is noisy. These are not
Inception-network scores: never compare them with published FIDs.

That floor is optimistic when the real data are mnist-5k: the classifier trained
on 4,000 of those very digits, and its features of digits it has seen are tighter
than of digits it has not (at 1,000 a side against its training digits: about 5
for other training digits, measured once by hand; about 10 for its held-out ones,
the held-out floor of ``benchmarks/digit_metrics_calibration.py``). Generated
digits are always unseen, so ``classifier-fid`` also reports a like-for-like pair
on the classifier's own split, at the size of its held-out set (1,000):
``heldout-floor``, its held-out digits against as many of its training digits,
and ``heldout-fid``, as many generated images against the same training digits.
``heldout-fid / heldout-floor`` is how far generated digits are from new real
ones. The pair is reported for 28-pixel images only (the classifier's own size;
a resize would blur the reference digits and the generated ones differently).

The Metric protocol returns numbers only; what produced them (feature extractor,
the weights' sha256 prefix, numbers of real and generated samples, seed) is
written to ``metrics-provenance.json`` in the classifier's cache directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ganforge_core import BuildContext, Dataset, Metric, Options, hookimpl
from ganforge_core.features import fid, fid_scores, kid_scores, over_halvings, real_pool, write_provenance
from ganforge_digit_metrics import classifier as clf
from ganforge_digit_metrics.measures import kl_to_uniform, precision_recall

CLASSIFIER_PAPER = "ganforge's own MNIST classifier (two conv layers, 128 features), trained on mnist-5k"
_LOADED: dict[Path, clf.Loaded] = {}


def load_classifier() -> clf.Loaded:
    """The cached classifier for the current ``$GANFORGE_CACHE``, loaded once per process."""
    directory = clf.cache_dir()
    if directory not in _LOADED:
        _LOADED[directory] = clf.load_or_train(directory)
    return _LOADED[directory]


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
        _SPLIT[directory] = (model.features(images[held_rows]), model.features(images[train_rows]))
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
    predictions, features = [], []
    for chunk in _as_digits(images).split(2048):
        hidden = model.features(chunk)
        features.append(hidden)
        predictions.append(model.head(hidden).argmax(1))
    return torch.cat(predictions).reshape(n, c), torch.cat(features).reshape(n, -1)


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


# -- options -----------------------------------------------------------------------


class ClassOptions(Options):
    samples: int = Field(10_000, ge=1, description="generated samples to classify")


class StackedOptions(Options):
    samples: int = Field(26_000, ge=1, description="generated samples to classify (VEEGAN / PacGAN: 26,000)")


class FeatureOptions(Options):
    samples: int = Field(
        5_000, ge=2, description="generated samples; capped at half the real set so the real floor has two halves"
    )
    splits: int = Field(
        5, ge=1, description="random halvings of the real samples that the score and its floor are averaged over"
    )


class PrecisionRecallOptions(FeatureOptions):
    k: int = Field(3, ge=1, description="neighbours that set each sample's k-NN radius (paper: 3)")


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
        weights = torch.tensor([10 ** (digits.shape[1] - 1 - i) for i in range(digits.shape[1])])
        modes = (digits * weights).sum(1)
        total = 10 ** digits.shape[1]
        return {"modes": float(torch.bincount(modes, minlength=total).gt(0).sum()), "kl": kl_to_uniform(modes, total)}


class FeatureMetric(Metric):
    name = ""

    def __init__(self, options: FeatureOptions) -> None:
        self.options = options

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        real = real_pool(dataset.samples, self.options.samples)
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


def _factory(cls: type[Metric]) -> Callable[[Options, BuildContext], Metric]:
    return lambda options, ctx: cls(options)  # type: ignore[call-arg]


@hookimpl
def ganforge_register_metrics(register):
    register(
        "digit-classes",
        _factory(DigitClasses),
        options=ClassOptions,
        summary="digits the MNIST classifier finds in generated samples (of 10) and KL(class histogram || uniform)",
        requires={"digits"},
        paper=CLASSIFIER_PAPER + "; class coverage as in Che et al. 2017, 'Mode regularized GANs'",
    )
    register(
        "stacked-modes",
        _factory(StackedModes),
        options=StackedOptions,
        summary="Stacked MNIST modes covered (of 1,000 digit triples) and KL(mode histogram || uniform)",
        requires={"stacked-digits"},
        paper="Srivastava et al. 2017, 'VEEGAN', Table 2; Lin et al. 2018, 'PacGAN', Tables 2-3",
    )
    register(
        "classifier-fid",
        _factory(ClassifierFID),
        options=FeatureOptions,
        summary="FID on the MNIST classifier's features (not Inception), with the real-vs-real floor; "
        "at 28 px also heldout-fid beside heldout-floor (digits the classifier never trained on)",
        requires={"digits"},
        paper="Heusel et al. 2017, 'GANs trained by a two time-scale update rule' (FID)",
    )
    register(
        "classifier-kid",
        _factory(ClassifierKID),
        options=FeatureOptions,
        summary="KID (unbiased cubic-kernel MMD²) on the MNIST classifier's features, with the real floor",
        requires={"digits"},
        paper="Bińkowski et al. 2018, 'Demystifying MMD GANs' (KID)",
    )
    register(
        "precision-recall",
        _factory(PrecisionRecall),
        options=PrecisionRecallOptions,
        summary="k-NN precision (fidelity) and recall (coverage) on the MNIST classifier's features",
        requires={"digits"},
        paper="Kynkäänniemi et al. 2019, 'Improved precision and recall metric for assessing generative models'",
    )
