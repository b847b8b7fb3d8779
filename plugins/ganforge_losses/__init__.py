"""Adversarial losses: ``bce``, ``non-saturating``, ``lsgan``, ``relativistic``, ``wgan``, ``wgan-gp``, ``hinge``.

Traits the rest of ganforge checks:

* ``targets``: the loss scores logits against ``ctx.targets``, so label smoothing
  acts on it. ``wasserstein`` and ``margin`` losses have no targets, nor has
  ``pairing`` (r3gan's ``rpgan``), and ``label-smoothing`` refuses them.
* ``input-gradient-penalty`` and ``lipschitz-penalty``: ``wgan-gp`` penalises
  D's input gradient itself, pulling its norm toward 1 between real and fake
  samples (``penalty-on-real`` and ``penalty-on-fake``: both batches); a
  BatchNorm critic is refused, and so are the regularizers that pull the same
  norm elsewhere or a second time (``r1``, ``r2``, ``gradient-penalty``).
* ``weight-clipping``: ``wgan`` clips D's weights, which is pointless on top of
  a gradient penalty or spectral normalisation (each constrains the same
  gradient, and clipping then only cripples the critic), so both are refused.
* ``graph-safe``: every loss here depends on tensors alone (``wgan`` clips in
  place), so a CUDA graph may capture it.

Every trait's meaning and readers: :mod:`ganforge_core.traits` (docs/traits.md).
"""

from __future__ import annotations

from ganforge_core import BuildContext, Loss, NoOptions, Recommendation, Register, hookimpl
from ganforge_core.penalties import NEEDS_NO_BATCHNORM
from ganforge_losses.options import LeastSquaresOptions, WGANGPOptions, WGANOptions

GOODFELLOW = "Goodfellow et al. 2014, 'Generative adversarial nets'"
DCGAN_ADAM = Recommendation(lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), d_steps=1)
WGAN_GP_ADAM = Recommendation(lr_g=1e-4, lr_d=1e-4, betas=(0.0, 0.9), d_steps=5)
# The paper trains with RMSprop at 5e-5 because momentum destabilised its critic.
# Adam with beta1 = 0 has no momentum, and beta2 = 0.99 matches RMSprop's default
# decay in the reference code (torch.optim.RMSprop, alpha=0.99); what remains is
# Adam's bias correction of the second moment, which fades within ~100 steps.
WGAN_RMSPROP_LIKE = Recommendation(lr_g=5e-5, lr_d=5e-5, betas=(0.0, 0.99), d_steps=5)
# SN-GAN's hinge-loss ResNet setting on CIFAR-10 (pfnet-research/sngan_projection).
SNGAN_HINGE_ADAM = Recommendation(lr_g=2e-4, lr_d=2e-4, betas=(0.0, 0.9), d_steps=5)
# The LSGAN reference code trains its scene models with Adam at 1e-3, beta1 0.5.
LSGAN_ADAM = Recommendation(lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.999), d_steps=1)

# The losses import torch: each factory imports its loss when a run builds it.
def _minimax(options: NoOptions, ctx: BuildContext) -> Loss:
    from ganforge_losses.targets import MinimaxLoss

    return MinimaxLoss()


def _non_saturating(options: NoOptions, ctx: BuildContext) -> Loss:
    from ganforge_losses.targets import NonSaturatingLoss

    return NonSaturatingLoss()


def _least_squares(options: LeastSquaresOptions, ctx: BuildContext) -> Loss:
    from ganforge_losses.targets import LeastSquaresLoss

    return LeastSquaresLoss(options)


def _relativistic(options: NoOptions, ctx: BuildContext) -> Loss:
    from ganforge_losses.targets import RelativisticAverageLoss

    return RelativisticAverageLoss()


def _wgan(options: WGANOptions, ctx: BuildContext) -> Loss:
    from ganforge_losses.critics import WGANLoss

    return WGANLoss(options)


def _wgan_gp(options: WGANGPOptions, ctx: BuildContext) -> Loss:
    from ganforge_losses.critics import WGANGPLoss

    return WGANGPLoss(options)


def _hinge(options: NoOptions, ctx: BuildContext) -> Loss:
    from ganforge_losses.critics import HingeLoss

    return HingeLoss()


@hookimpl
def ganforge_register_losses(register: Register) -> None:
    register(
        "bce",
        _minimax,
        options=NoOptions,
        summary="the original minimax loss: binary cross-entropy for D, -BCE(fake) for G",
        traits={"targets", "graph-safe"},
        recommends=DCGAN_ADAM,
        paper=GOODFELLOW,
    )
    register(
        "non-saturating",
        _non_saturating,
        options=NoOptions,
        summary="BCE for D; G maximises log D(G(z)) (the -log D trick)",
        traits={"targets", "graph-safe"},
        recommends=DCGAN_ADAM,
        paper=GOODFELLOW + ", section 3",
    )
    register(
        "lsgan",
        _least_squares,
        options=LeastSquaresOptions,
        summary="least squares: D pulls real outputs to 1 and fake to 0, G pulls fake to c; Adam 1e-3",
        traits={"targets", "graph-safe"},
        recommends=LSGAN_ADAM,
        paper="Mao et al. 2017, 'Least squares generative adversarial networks'",
    )
    register(
        "relativistic",
        _relativistic,
        options=NoOptions,
        summary="relativistic average GAN (RaSGAN): each side judged against the other's mean logit",
        traits={"targets", "relativistic", "graph-safe"},
        recommends=DCGAN_ADAM,
        paper="Jolicoeur-Martineau 2018, 'The relativistic discriminator: a key element missing from standard GAN'",
    )
    register(
        "wgan",
        _wgan,
        options=WGANOptions,
        summary="Wasserstein critic with weight clipping; lr 5e-5, Adam (0, 0.99) standing in for RMSprop, 5 D steps",
        traits={"wasserstein", "weight-clipping", "graph-safe"},
        conflicts={
            "input-gradient-penalty": "weight clipping and a gradient penalty both constrain the critic's "
            "gradient, and clipping on top of a penalty only cripples the critic; use loss 'wgan-gp' instead",
            "spectral-norm": "spectral normalisation already bounds the critic's Lipschitz constant, and clipping "
            "the raw weights under it only cripples the critic; use loss 'wgan-gp' or 'hinge' with spectral-norm",
        },
        recommends=WGAN_RMSPROP_LIKE,
        paper="Arjovsky et al. 2017, 'Wasserstein generative adversarial networks', Algorithm 1",
    )
    register(
        "wgan-gp",
        _wgan_gp,
        options=WGANGPOptions,
        summary="Wasserstein critic with gradient penalty; Adam 1e-4, betas (0, 0.9), 5 critic steps",
        traits={"wasserstein", "input-gradient-penalty", "penalty-on-real", "penalty-on-fake", "lipschitz-penalty",
                "graph-safe"},
        conflicts={"batchnorm-in-d": NEEDS_NO_BATCHNORM},
        recommends=WGAN_GP_ADAM,
        paper="Gulrajani et al. 2017, 'Improved training of Wasserstein GANs'",
    )
    register(
        "hinge",
        _hinge,
        options=NoOptions,
        summary="hinge loss: D relu(1 - real) + relu(1 + fake), G -fake; Adam 2e-4, betas (0, 0.9), 5 D steps",
        traits={"margin", "graph-safe"},
        recommends=SNGAN_HINGE_ADAM,
        paper="Lim & Ye 2017, 'Geometric GAN'; Miyato et al. 2018, 'Spectral normalization for GANs'",
    )
