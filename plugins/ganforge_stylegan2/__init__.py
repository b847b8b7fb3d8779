"""StyleGAN2 (Karras et al. 2020) in plain PyTorch: generator, residual discriminator, path-length regularization.

Square images of side ``s * 2**k`` with s in 4..7 and k >= 1 (8, 16, 32, 64, ... and
MNIST's 28 = 7 * 4), any channel count; unconditional. Lazy R1 is the ``r1``
regularizer with ``every=16`` (ganforge_regularizers): the engine runs it as a D reg
phase and adjusts D's Adam as StyleGAN2 does. No custom CUDA ops: nothing to compile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganforge_core import BuildContext, ConfigError, Register, Regularizer, hookimpl
from ganforge_stylegan2.options import DiscriminatorOptions, GeneratorOptions, PathLengthOptions, start_and_doublings

if TYPE_CHECKING:
    from ganforge_stylegan2.networks import StyleGAN2Discriminator, StyleGAN2Generator

PAPER = (
    "Karras et al. 2020, 'Analyzing and improving the image quality of StyleGAN' (StyleGAN2); "
    "code: NVlabs/stylegan2-ada-pytorch (Karras et al. 2020, 'Training GANs with limited data')"
)
SUPPORTED_SIDES = "s * 2**k with s in 4..7 and k >= 1 (8, 12, 16, 28, 32, 64, 128, ...)"


def _side(shape: tuple[int, ...]) -> int:
    """The side of square images StyleGAN2 here can build for; a one-line ConfigError otherwise."""
    if len(shape) != 3 or shape[1] != shape[2] or start_and_doublings(shape[1]) is None:
        raise ConfigError(
            f"stylegan2 needs square images [C, S, S] with S = {SUPPORTED_SIDES}; "
            f"the dataset's samples are {list(shape)}"
        )
    return shape[1]


def build_generator(options: GeneratorOptions, ctx: BuildContext) -> StyleGAN2Generator:
    from ganforge_stylegan2.networks import StyleGAN2Generator

    return StyleGAN2Generator(options, ctx.data_shape[0], _side(ctx.data_shape))


def build_discriminator(options: DiscriminatorOptions, ctx: BuildContext) -> StyleGAN2Discriminator:
    from ganforge_stylegan2.networks import StyleGAN2Discriminator

    shape = ctx.d_input_shape or ctx.data_shape  # packing multiplies the channels
    return StyleGAN2Discriminator(options, shape[0], _side(shape))


def build_path_length(options: PathLengthOptions, ctx: BuildContext) -> Regularizer:
    from ganforge_stylegan2.path_length import PathLength

    return PathLength(options)


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register(
        "stylegan2",
        build_generator,
        options=GeneratorOptions,
        summary="StyleGAN2 generator: mapping network, modulated/demodulated convs, noise inputs, skip toRGB, "
        "style mixing, truncation in eval mode; square images of side s * 2**k (s 4..7), unconditional",
        requires={"image"},
        traits={"truncation"},
        paper=PAPER,
    )


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register(
        "stylegan2",
        build_discriminator,
        options=DiscriminatorOptions,
        summary="StyleGAN2 residual discriminator with minibatch standard deviation, no normalisation "
        "(pair it with r1:every=16); unconditional",
        requires={"image"},
        paper=PAPER,
    )


@hookimpl
def ganforge_register_regularizers(register: Register) -> None:
    register(
        "path-length",
        build_path_length,
        options=PathLengthOptions,
        summary="StyleGAN2's path-length regularization of G (lazy, every 4 G steps): w-space with the "
        "stylegan2 generator, the latents z with any other",
        traits={"graph-safe"},
        paper="Karras et al. 2020, 'Analyzing and improving the image quality of StyleGAN', section 3.2",
    )
