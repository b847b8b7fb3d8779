"""R3GAN (Huang et al. 2024): the RpGAN loss ``rpgan`` and the ``r3gan`` generator and discriminator.

R3GAN's recipe is RpGAN with zero-centred R1 *and* R2 at the same gamma (the
``r1`` and ``r2`` regularizers, both given), no normalisation anywhere, Adam with
beta1 = 0, and cosine ramps over the run (learning rate, gamma, beta2, EMA
half-life). ``ganforge run --preset r3gan-stacked-mnist`` is that recipe on
Stacked MNIST; docs/stabilisers.md says which ramps ganforge reproduces.

Images of any square side (the dcgan plan: a base of 4-7 doubled), any channel
count; ``--conditional`` runs embed the class in G and project it in D.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganforge_core import BuildContext, ConfigError, Loss, NoOptions, Recommendation, Register, hookimpl
from ganforge_r3gan.options import DiscriminatorOptions, GeneratorOptions

if TYPE_CHECKING:
    from ganforge_r3gan.networks import R3GANDiscriminator, R3GANGenerator

PAPER = "Huang et al. 2024, 'The GAN is dead; long live the GAN! A modern GAN baseline' (R3GAN; brownvc/R3GAN)"
# R3GAN's Adam: lr 2e-4 (decayed to 5e-5), beta1 0, beta2 ramped 0.9 -> 0.99; one D step per G step.
R3GAN_ADAM = Recommendation(lr_g=2e-4, lr_d=2e-4, betas=(0.0, 0.99), d_steps=1)


def _square_side(shape: tuple[int, ...]) -> int:
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ConfigError(f"r3gan needs square images [C, S, S]; the dataset's samples are {list(shape)}")
    return shape[1]


def build_generator(options: GeneratorOptions, ctx: BuildContext) -> R3GANGenerator:
    from ganforge_core.layers import class_count
    from ganforge_r3gan.networks import R3GANGenerator

    return R3GANGenerator(options, ctx.data_shape[0], _square_side(ctx.data_shape), class_count(ctx))


def build_discriminator(options: DiscriminatorOptions, ctx: BuildContext) -> R3GANDiscriminator:
    from ganforge_core.layers import class_count
    from ganforge_r3gan.networks import R3GANDiscriminator

    shape = ctx.d_input_shape or ctx.data_shape  # packing multiplies the channels
    return R3GANDiscriminator(options, shape[0], _square_side(shape), class_count(ctx))


def build_loss(options: NoOptions, ctx: BuildContext) -> Loss:
    from ganforge_r3gan.loss import RelativisticPairingLoss

    return RelativisticPairingLoss()


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register(
        "r3gan",
        build_generator,
        options=GeneratorOptions,
        summary="R3GAN's ResNet generator: grouped-conv inverted bottlenecks, no normalisation, fix-up init, "
        "binomial upsampling; any square size; conditional: class embedding concatenated to z",
        requires={"image"},
        traits={"label-conditioning"},
        paper=PAPER,
    )


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register(
        "r3gan",
        build_discriminator,
        options=DiscriminatorOptions,
        summary="R3GAN's ResNet discriminator (no normalisation: suits r1 and r2); any square size; "
        "conditional: projection onto a class embedding",
        requires={"image"},
        traits={"label-conditioning", "per-sample"},
        paper=PAPER,
    )


@hookimpl
def ganforge_register_losses(register: Register) -> None:
    register(
        "rpgan",
        build_loss,
        options=NoOptions,
        summary="relativistic pairing (RpGAN): D softplus(D(fake) - D(real)), G softplus(D(real) - D(fake)), "
        "each fake against one real; pair it with r1 and r2",
        traits={"pairing", "graph-safe"},
        recommends=R3GAN_ADAM,
        paper=PAPER + ", eq. 2; Jolicoeur-Martineau 2018 (the relativistic pairing GAN)",
    )
