"""DCGAN generator and discriminator (Radford et al. 2016) for square images of any size."""

from __future__ import annotations

from ganforge_core import hookimpl
from ganforge_dcgan.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    DiscriminatorOptions,
    GeneratorOptions,
)

PAPER = "Radford et al. 2016, 'Unsupervised representation learning with deep convolutional GANs'"


def _needs_square_images(ctx):
    shape = ctx.data_shape
    if len(shape) != 3 or shape[1] != shape[2]:
        from ganforge_core import ConfigError

        raise ConfigError(f"dcgan needs square images [C, S, S]; the dataset's samples are {list(shape)}")


def build_generator(options: GeneratorOptions, ctx):
    _needs_square_images(ctx)
    return DCGANGenerator(options, channels=ctx.data_shape[0], size=ctx.data_shape[1])


def build_discriminator(options: DiscriminatorOptions, ctx):
    _needs_square_images(ctx)
    shape = ctx.d_input_shape or ctx.data_shape  # packing multiplies the channels
    return DCGANDiscriminator(options, channels=shape[0], size=shape[1])


@hookimpl
def ganforge_register_generators(register):
    register(
        "dcgan",
        build_generator,
        options=GeneratorOptions,
        summary="transposed-conv generator with BatchNorm; any square size, any channel count",
        requires={"image"},
        traits={"batchnorm-in-g"},
        paper=PAPER,
    )


@hookimpl
def ganforge_register_discriminators(register):
    register(
        "dcgan",
        build_discriminator,
        options=DiscriminatorOptions,
        summary="strided-conv discriminator; norm 'auto' is BatchNorm, or LayerNorm under a gradient penalty",
        requires={"image"},
        traits=lambda o: {"batchnorm-in-d"} if o.norm == "batch" else set(),
        paper=PAPER,
    )
