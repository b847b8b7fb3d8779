"""Stabilisers: spectral-norm, ema, label-smoothing, instance-noise, packing, diffaugment, r1, gradient-penalty.

Combinations refused before training, and why (each is a ``conflicts`` entry,
a ``requires`` entry or an option validator, so the user gets one line):

* ``label-smoothing`` with a ``wasserstein`` (wgan, wgan-gp) or ``margin``
  (hinge) loss: those losses have no targets, so smoothing would silently do
  nothing.
* ``r1`` or ``gradient-penalty`` with a ``batchnorm-in-d`` critic: BatchNorm
  makes each logit depend on the whole batch, so the per-sample input gradient
  the penalty constrains is not the critic's.
* ``r1`` or ``gradient-penalty`` with another ``gradient-penalty`` (the other
  one, or the wgan-gp loss's own): R1 pulls D's gradient norm to 0 at real
  data, WGAN-GP to 1 between real and fake; stacking them fights or doubles
  the penalty. Raise the one weight instead.
* ``wgan`` (weight clipping) with a gradient penalty or spectral norm: refused
  by the loss; clipping on top of another Lipschitz bound only cripples D.
* ``packing`` with a batch size that m does not divide (option validator), and
  with ``--conditional``: a packed D input holds m samples but takes one label.
* ``diffaugment`` on vector data (``requires={"image"}``): translation and
  cutout are image operations.

Order matters where regularizers transform D's inputs: they apply in the order
given, so list ``packing`` last (after ``diffaugment`` or ``instance-noise``)
to augment each sample before packing.
"""

from __future__ import annotations

from ganforge_core import graph_safe_unless_annealed, hookimpl
from ganforge_losses import PENALTY_NEEDS_NO_BATCHNORM
from ganforge_regularizers.d_inputs import InstanceNoise, InstanceNoiseOptions, Packing, PackingOptions
from ganforge_regularizers.diffaugment import DiffAugment, DiffAugmentOptions
from ganforge_regularizers.networks import EMAOptions, GeneratorEMA, SpectralNorm, SpectralNormOptions
from ganforge_regularizers.penalties import R1, GradientPenalty, GradientPenaltyOptions, R1Options
from ganforge_regularizers.targets import LabelSmoothing, LabelSmoothingOptions

ONE_PENALTY = (
    "D's input gradient is already penalised by another component (wgan-gp's own penalty, r1 or "
    "gradient-penalty); two penalties pull its norm toward different targets or double it; keep one"
)


@hookimpl
def ganforge_register_regularizers(register):
    register(
        "spectral-norm",
        lambda options, ctx: SpectralNorm(options),
        options=SpectralNormOptions,
        summary="spectral normalisation of every conv/linear weight of D (optionally G)",
        traits={"spectral-norm", "graph-safe"},
        paper="Miyato et al. 2018, 'Spectral normalization for GANs'",
    )
    register(
        "ema",
        lambda options, ctx: GeneratorEMA(options),
        options=EMAOptions,
        summary="exponential moving average of G, used for samples and metrics",
        # Before `start` the update reads the step number; afterwards it is tensors alone.
        traits=lambda o: {"ema"} | ({"graph-safe"} if o.start == 0 else set()),
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
        },
        paper="Salimans et al. 2016, 'Improved techniques for training GANs'",
    )
    register(
        "instance-noise",
        lambda options, ctx: InstanceNoise(options),
        options=InstanceNoiseOptions,
        summary="Gaussian noise on D's inputs, annealed linearly or on a cosine over the run",
        # Annealing reads the step, which a captured CUDA graph would freeze.
        traits=lambda o: {"stochastic"} | ({"graph-safe"} if o.anneal == "none" else set()),
        paper="Sønderby et al. 2017, 'Amortised MAP inference for image super-resolution'",
    )
    register(
        "packing",
        lambda options, ctx: Packing(options),
        options=PackingOptions,
        summary="PacGAN: D judges m samples concatenated into one input; list it last among regularizers",
        traits={"packing", "graph-safe"},
        conflicts={"conditional": "a packed D input holds m samples but a conditional D takes one label per input"},
        paper="Lin et al. 2018, 'PacGAN: the power of two samples in generative adversarial networks'",
    )
    register(
        "diffaugment",
        lambda options, ctx: DiffAugment(options),
        options=DiffAugmentOptions,
        summary="differentiable colour, translation and cutout on every image D sees, real and fake",
        traits=lambda o: {"stochastic"} | graph_safe_unless_annealed(o),
        requires={"image"},
        paper="Zhao et al. 2020, 'Differentiable augmentation for data-efficient GAN training'",
    )
    register(
        "r1",
        lambda options, ctx: R1(options),
        options=R1Options,
        summary="R1: gamma/2 * E||grad D(real)||^2, optionally lazily every k steps (StyleGAN2)",
        # Lazy regularisation (every > 1) is a phase of its own, captured in a graph of its own.
        traits=lambda o: {"gradient-penalty"} | graph_safe_unless_annealed(o),
        conflicts={"batchnorm-in-d": PENALTY_NEEDS_NO_BATCHNORM, "gradient-penalty": ONE_PENALTY},
        paper="Mescheder et al. 2018, 'Which training methods for GANs do actually converge?', eq. 9",
    )
    register(
        "gradient-penalty",
        lambda options, ctx: GradientPenalty(options),
        options=GradientPenaltyOptions,
        summary="WGAN-GP's gradient penalty on real-fake interpolates, added to any loss",
        traits=lambda o: {"gradient-penalty"} | graph_safe_unless_annealed(o),
        conflicts={"batchnorm-in-d": PENALTY_NEEDS_NO_BATCHNORM, "gradient-penalty": ONE_PENALTY},
        paper="Gulrajani et al. 2017, 'Improved training of Wasserstein GANs', eq. 3; Kurach et al. 2019",
    )
