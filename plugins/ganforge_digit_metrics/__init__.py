"""Metrics for digit datasets, computed with ganforge's own cached MNIST classifier.

``digit-classes`` and ``stacked-modes`` count the classes the classifier sees in
generated samples; ``classifier-fid``, ``classifier-kid`` and ``precision-recall``
compare its penultimate (128-unit) features of generated and real images, and
``class-spread`` compares them class by class (the classifier's classes), which
is where a conditional G that draws one image per class shows. Each
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

from pydantic import Field

from ganforge_core import BuildContext, Metric, Options, Register, hookimpl

CLASSIFIER_PAPER = "ganforge's own MNIST classifier (two conv layers, 128 features), trained on mnist-5k"


# -- options -----------------------------------------------------------------------


class ClassOptions(Options):
    samples: int = Field(10_000, ge=1, le=1_000_000, description="generated samples to classify")


class StackedOptions(Options):
    samples: int = Field(
        26_000, ge=1, le=1_000_000, description="generated samples to classify (VEEGAN / PacGAN: 26,000)"
    )


class FeatureOptions(Options):
    samples: int = Field(
        5_000, ge=2, le=1_000_000,
        description="generated samples; capped at half the real set so the real floor has two halves"
    )
    splits: int = Field(
        5, ge=1, le=1000,
        description="random halvings of the real samples that the score and its floor are averaged over"
    )


class PrecisionRecallOptions(FeatureOptions):
    k: int = Field(3, ge=1, le=1000, description="neighbours that set each sample's k-NN radius (paper: 3)")


class ClassSpreadOptions(Options):
    samples: int = Field(
        5_000, ge=2, le=1_000_000, description="generated samples, and real ones (at most the dataset's)"
    )
    k: int = Field(3, ge=1, le=1000, description="neighbours that set the k-NN radii of the per-class recall")



def _factory(name: str) -> Callable[[Options, BuildContext], Metric]:
    """A factory of the metric class ``name`` in :mod:`ganforge_digit_metrics.metrics` (torch: imported when built)."""

    def build(options: Options, ctx: BuildContext) -> Metric:
        from ganforge_digit_metrics import metrics

        return getattr(metrics, name)(options)

    return build


@hookimpl
def ganforge_register_metrics(register: Register) -> None:
    register(
        "digit-classes",
        _factory("DigitClasses"),
        options=ClassOptions,
        summary="digits the MNIST classifier finds in generated samples (of 10) and KL(class histogram || uniform)",
        requires={"digits"},
        paper=CLASSIFIER_PAPER + "; class coverage as in Che et al. 2017, 'Mode regularized GANs'",
    )
    register(
        "stacked-modes",
        _factory("StackedModes"),
        options=StackedOptions,
        summary="Stacked MNIST modes covered (of 1,000 digit triples) and KL(mode histogram || uniform)",
        requires={"stacked-digits"},
        paper="Srivastava et al. 2017, 'VEEGAN', Table 2; Lin et al. 2018, 'PacGAN', Tables 2-3",
    )
    register(
        "classifier-fid",
        _factory("ClassifierFID"),
        options=FeatureOptions,
        summary="FID on the MNIST classifier's features (not Inception), with the real-vs-real floor; "
        "at 28 px also heldout-fid beside heldout-floor (digits the classifier never trained on)",
        requires={"digits"},
        paper="Heusel et al. 2017, 'GANs trained by a two time-scale update rule' (FID)",
    )
    register(
        "classifier-kid",
        _factory("ClassifierKID"),
        options=FeatureOptions,
        summary="KID (unbiased cubic-kernel MMD²) on the MNIST classifier's features, with the real floor",
        requires={"digits"},
        paper="Bińkowski et al. 2018, 'Demystifying MMD GANs' (KID)",
    )
    register(
        "precision-recall",
        _factory("PrecisionRecall"),
        options=PrecisionRecallOptions,
        summary="k-NN precision (fidelity) and recall (coverage) on the MNIST classifier's features",
        requires={"digits"},
        paper="Kynkäänniemi et al. 2019, 'Improved precision and recall metric for assessing generative models'",
    )
    register(
        "class-spread",
        _factory("ClassSpread"),
        options=ClassSpreadOptions,
        summary="diversity within each class the MNIST classifier sees: RMS feature distance of a class's "
        "samples over the real class's (1: as varied; 0: one image), and per-class k-NN recall",
        requires={"digits"},
        paper="recall within each class as in Kynkäänniemi et al. 2019, 'Improved precision and recall metric'",
    )
