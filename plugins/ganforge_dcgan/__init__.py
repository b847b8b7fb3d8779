"""DCGAN generator and discriminator (Radford et al. 2016) for square images of any size.

Weights start as the paper initialises them (``init=dcgan``) unless ``init=pytorch``.
Both take class labels in ``--conditional`` runs: G through conditional BatchNorm
(a per-class gain and bias in every BatchNorm) and a small class embedding appended
to z, D as a projection discriminator (Miyato & Koyama 2018).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganforge_core import BuildContext, Register, hookimpl
from ganforge_dcgan.options import DiscriminatorOptions, GeneratorOptions

if TYPE_CHECKING:
    from ganforge_dcgan.networks import DCGANDiscriminator, DCGANGenerator

PAPER = (
    "Radford et al. 2016, 'Unsupervised representation learning with deep convolutional GANs'; "
    "conditional: Miyato & Koyama 2018, 'cGANs with projection discriminator' (projection D, conditional BN in G)"
)


def _needs_square_images(ctx: BuildContext) -> None:
    shape = ctx.data_shape
    if len(shape) != 3 or shape[1] != shape[2]:
        from ganforge_core import ConfigError

        raise ConfigError(f"dcgan needs square images [C, S, S]; the dataset's samples are {list(shape)}")


def build_generator(options: GeneratorOptions, ctx: BuildContext) -> DCGANGenerator:
    from ganforge_core.layers import class_count
    from ganforge_dcgan.networks import DCGANGenerator

    _needs_square_images(ctx)
    return DCGANGenerator(options, ctx.data_shape[0], ctx.data_shape[1], class_count(ctx))


def build_discriminator(options: DiscriminatorOptions, ctx: BuildContext) -> DCGANDiscriminator:
    from ganforge_core.layers import class_count
    from ganforge_dcgan.networks import DCGANDiscriminator

    _needs_square_images(ctx)
    shape = ctx.d_input_shape or ctx.data_shape  # packing multiplies the channels
    return DCGANDiscriminator(options, shape[0], shape[1], class_count(ctx))


def _discriminator_traits(options: DiscriminatorOptions) -> set[str]:
    # GroupNorm(1, C) (norm 'layer') and no norm score each sample on its own: the engine then
    # scores D main's real and fake batches in one call
    return {"label-conditioning"} | ({"batchnorm-in-d"} if options.norm == "batch" else {"per-sample"})


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register(
        "dcgan",
        build_generator,
        options=GeneratorOptions,
        summary="transposed-conv generator with BatchNorm; any square size, any channel count; "
        "conditional: class-conditional BatchNorm and a small class embedding appended to z",
        requires={"image"},
        traits={"batchnorm-in-g", "label-conditioning"},
        paper=PAPER,
    )


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register(
        "dcgan",
        build_discriminator,
        options=DiscriminatorOptions,
        summary="strided-conv discriminator; norm 'auto' is BatchNorm, or LayerNorm under an input-gradient "
        "penalty; conditional: projection discriminator",
        requires={"image"},
        traits=_discriminator_traits,
        paper=PAPER,
    )
