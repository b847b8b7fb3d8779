"""Stabilisers: spectral-norm, ema, label-smoothing, instance-noise, packing, diffaugment, r1, r2, gradient-penalty.

Combinations refused before training, and why (each is a ``conflicts`` entry,
a ``requires`` entry or an option validator, so the user gets one line):

* ``label-smoothing`` with a ``wasserstein`` (wgan, wgan-gp) or ``margin``
  (hinge) loss: those losses have no targets, so smoothing would silently do
  nothing.
* ``r1``, ``r2`` or ``gradient-penalty`` with a ``batchnorm-in-d`` critic:
  BatchNorm makes each logit depend on the whole batch, so the per-sample input
  gradient the penalty constrains is not the critic's.
* ``r1`` or ``r2`` with a ``lipschitz-penalty`` (the ``gradient-penalty``
  regularizer, or the wgan-gp loss's own): R1 and R2 pull D's gradient norm to 0
  at real or fake data, WGAN-GP to 1 between them; the two fight.
* ``gradient-penalty`` with the wgan-gp loss: the same penalty twice. Raise the
  one weight instead.
* ``r1`` with ``r2`` is allowed: both are zero-centred (R3GAN uses the pair).
* ``wgan`` (weight clipping) with any of these penalties or spectral norm:
  refused by the loss; clipping on top of another constraint only cripples D.
* ``packing`` with a batch size that m does not divide (option validator), and
  with ``--conditional``: a packed D input holds m samples but takes one label.
* ``diffaugment`` on vector data (``requires={"image"}``): translation and
  cutout are image operations.

Order matters where regularizers transform D's inputs: they apply in the order
given, except that ``packing`` (any regularizer with the ``packing`` trait) is
moved last by ``resolve``, so ``diffaugment`` or ``instance-noise`` transform
each sample before it is packed.
"""

from __future__ import annotations

from ganforge_core import BuildContext, Register, Regularizer, graph_safe_unless_annealed, hookimpl
from ganforge_core.penalties import NEEDS_NO_BATCHNORM
from ganforge_regularizers.options import (
    DiffAugmentOptions,
    EMAOptions,
    GradientPenaltyOptions,
    InstanceNoiseOptions,
    PackingOptions,
    R1Options,
    R2Options,
    SpectralNormOptions,
)
from ganforge_regularizers.targets import LabelSmoothing, LabelSmoothingOptions

ZERO_VERSUS_ONE = (
    "R1 and R2 pull D's gradient norm to 0 at real or fake samples, a Lipschitz penalty (wgan-gp's own "
    "or the gradient-penalty regularizer) to 1 between them; the two fight; keep one"
)
ONE_LIPSCHITZ_PENALTY = (
    "D's gradient norm is already pulled toward 1 between real and fake samples by wgan-gp's own penalty; "
    "a second copy only doubles it; keep one and raise its weight"
)


# Most regularizers import torch: each factory imports its class when a run builds it.
def _spectral_norm(options: SpectralNormOptions, ctx: BuildContext) -> Regularizer:
    from ganforge_regularizers.networks import SpectralNorm

    return SpectralNorm(options)


def _ema(options: EMAOptions, ctx: BuildContext) -> Regularizer:
    from ganforge_regularizers.networks import GeneratorEMA

    return GeneratorEMA(options)


def _instance_noise(options: InstanceNoiseOptions, ctx: BuildContext) -> Regularizer:
    from ganforge_regularizers.d_inputs import InstanceNoise

    return InstanceNoise(options)


def _packing(options: PackingOptions, ctx: BuildContext) -> Regularizer:
    from ganforge_regularizers.d_inputs import Packing

    return Packing(options)


def _diffaugment(options: DiffAugmentOptions, ctx: BuildContext) -> Regularizer:
    from ganforge_regularizers.diffaugment import DiffAugment

    return DiffAugment(options)


def _r1(options: R1Options, ctx: BuildContext) -> Regularizer:
    from ganforge_regularizers.penalties import R1

    return R1(options)


def _r2(options: R2Options, ctx: BuildContext) -> Regularizer:
    from ganforge_regularizers.penalties import R2

    return R2(options)


def _gradient_penalty(options: GradientPenaltyOptions, ctx: BuildContext) -> Regularizer:
    from ganforge_regularizers.penalties import GradientPenalty

    return GradientPenalty(options)


@hookimpl
def ganforge_register_regularizers(register: Register) -> None:
    register(
        "spectral-norm",
        _spectral_norm,
        options=SpectralNormOptions,
        summary="spectral normalisation of every conv/linear weight of D (optionally G)",
        traits={"spectral-norm", "graph-safe"},
        paper="Miyato et al. 2018, 'Spectral normalization for GANs'",
    )
    register(
        "ema",
        _ema,
        options=EMAOptions,
        summary="exponential moving average of G, used for samples and metrics",
        # Before `start` and during `ramp` the update reads the step number; afterwards it is tensors alone.
        traits=lambda o: {"ema"} | ({"graph-safe"} if o.start == 0 and o.ramp == 0 else set()),
        paper="Yazıcı et al. 2019, 'The unusual effectiveness of averaging in GAN training'; "
        "Karras et al. 2018, 'Progressive growing of GANs'",
    )
    register(
        "label-smoothing",
        lambda options, ctx: LabelSmoothing(options),
        options=LabelSmoothingOptions,
        summary="one-sided label smoothing of D's real targets (losses with targets: bce, non-saturating, lsgan...)",
        traits={"graph-safe"},
        conflicts={
            "wasserstein": "a Wasserstein critic has no targets to smooth; use a BCE-family loss",
            "margin": "the hinge loss has fixed margins, not targets, so there is nothing to smooth; "
            "use a BCE-family loss or lsgan",
            "pairing": "relativistic pairing scores real against fake logits, with no targets to smooth; "
            "use a BCE-family loss or lsgan",
        },
        paper="Salimans et al. 2016, 'Improved techniques for training GANs'",
    )
    register(
        "instance-noise",
        _instance_noise,
        options=InstanceNoiseOptions,
        summary="Gaussian noise on D's inputs, annealed linearly or on a cosine over the run",
        # Annealing reads the step, which a captured CUDA graph would freeze.
        traits=lambda o: {"stochastic"} | ({"graph-safe"} if o.anneal == "none" else set()),
        paper="Sønderby et al. 2017, 'Amortised MAP inference for image super-resolution'",
    )
    register(
        "packing",
        _packing,
        options=PackingOptions,
        summary="PacGAN: D judges m samples concatenated into one input; applied after every other D-input transform",
        traits={"packing", "graph-safe"},
        conflicts={"conditional": "a packed D input holds m samples but a conditional D takes one label per input"},
        paper="Lin et al. 2018, 'PacGAN: the power of two samples in generative adversarial networks'",
    )
    register(
        "diffaugment",
        _diffaugment,
        options=DiffAugmentOptions,
        summary="differentiable colour, translation and cutout on every image D sees, real and fake",
        traits=lambda o: {"stochastic"} | graph_safe_unless_annealed(o),
        requires={"image"},
        paper="Zhao et al. 2020, 'Differentiable augmentation for data-efficient GAN training'",
    )
    register(
        "r1",
        _r1,
        options=R1Options,
        summary="R1: gamma/2 * E||grad D(real)||^2, optionally lazily every k steps (StyleGAN2)",
        # Lazy regularisation (every > 1) is a phase of its own, captured in a graph of its own.
        traits=lambda o: {"input-gradient-penalty", "penalty-on-real"} | graph_safe_unless_annealed(o),
        conflicts={"batchnorm-in-d": NEEDS_NO_BATCHNORM, "lipschitz-penalty": ZERO_VERSUS_ONE},
        paper="Mescheder et al. 2018, 'Which training methods for GANs do actually converge?', eq. 9",
    )
    register(
        "r2",
        _r2,
        options=R2Options,
        summary="R2: gamma/2 * E||grad D(fake)||^2, optionally lazily every k steps; with r1, R3GAN's pair",
        # Lazy regularisation (every > 1) is a phase of its own, captured in a graph of its own.
        traits=lambda o: {"input-gradient-penalty", "penalty-on-fake"} | graph_safe_unless_annealed(o),
        conflicts={"batchnorm-in-d": NEEDS_NO_BATCHNORM, "lipschitz-penalty": ZERO_VERSUS_ONE},
        paper="Mescheder et al. 2018, eq. 10, after Roth et al. 2017, 'Stabilizing training of generative "
        "adversarial networks through regularization'; Huang et al. 2024, 'The GAN is dead; long live the GAN! "
        "A modern GAN baseline' (R3GAN)",
    )
    register(
        "gradient-penalty",
        _gradient_penalty,
        options=GradientPenaltyOptions,
        summary="WGAN-GP's gradient penalty on real-fake interpolates, added to any loss",
        traits=lambda o: {"input-gradient-penalty", "penalty-on-real", "penalty-on-fake", "lipschitz-penalty"}
        | graph_safe_unless_annealed(o),
        conflicts={"batchnorm-in-d": NEEDS_NO_BATCHNORM, "lipschitz-penalty": ONE_LIPSCHITZ_PENALTY},
        paper="Gulrajani et al. 2017, 'Improved training of Wasserstein GANs', eq. 3; Kurach et al. 2019",
    )
