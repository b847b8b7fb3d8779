"""SN-GAN residual generator and discriminator (Miyato et al. 2018; Gulrajani et al. 2017).

Square images of side 4 * 2**k (8, 16, 32, 64, 128, ...), any channel count. In
``--conditional`` runs G uses conditional BatchNorm and D is a projection
discriminator (Miyato & Koyama 2018).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganforge_core import BuildContext, ConfigError, Register, hookimpl
from ganforge_resnet.options import DiscriminatorOptions, GeneratorOptions, doublings

if TYPE_CHECKING:
    from ganforge_resnet.networks import ResNetDiscriminator, ResNetGenerator

PAPER = (
    "Miyato et al. 2018, 'Spectral normalization for GANs' (ResNet architectures, appendix); "
    "Gulrajani et al. 2017, 'Improved training of Wasserstein GANs'; "
    "conditional: Miyato & Koyama 2018, 'cGANs with projection discriminator'"
)
SUPPORTED_SIDES = "8, 16, 32, 64, 128, 256 (any 4 * 2**k)"


def _side(shape: tuple[int, ...]) -> int:
    """The side of square images whose side is 4 * 2**k; a one-line ConfigError otherwise."""
    if len(shape) != 3 or shape[1] != shape[2] or doublings(shape[1]) is None:
        raise ConfigError(
            f"resnet needs square images [C, S, S] with S in {SUPPORTED_SIDES}; "
            f"the dataset's samples are {list(shape)}"
        )
    return shape[1]


def build_generator(options: GeneratorOptions, ctx: BuildContext) -> ResNetGenerator:
    from ganforge_core.layers import class_count
    from ganforge_resnet.networks import ResNetGenerator

    return ResNetGenerator(options, ctx.data_shape[0], _side(ctx.data_shape), class_count(ctx))


def build_discriminator(options: DiscriminatorOptions, ctx: BuildContext) -> ResNetDiscriminator:
    from ganforge_core.layers import class_count
    from ganforge_resnet.networks import ResNetDiscriminator

    shape = ctx.d_input_shape or ctx.data_shape  # packing multiplies the channels
    return ResNetDiscriminator(options, shape[0], _side(shape), class_count(ctx))


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register(
        "resnet",
        build_generator,
        options=GeneratorOptions,
        summary="SN-GAN residual generator (BatchNorm, nearest upsampling); square images of side "
        "4 * 2**k; conditional: class-conditional BatchNorm",
        requires={"image"},
        traits={"batchnorm-in-g", "label-conditioning"},
        paper=PAPER,
    )


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register(
        "resnet",
        build_discriminator,
        options=DiscriminatorOptions,
        summary="SN-GAN residual discriminator (avg-pool, global sum pooling, no normalisation: pair it "
        "with spectral-norm or a gradient penalty); conditional: projection discriminator",
        requires={"image"},
        traits={"label-conditioning"},
        paper=PAPER,
    )
