"""Progressive growing of GANs (Karras et al. 2018): generator and discriminator ``progan``.

Both grow from 4x4 by resolution stages, with a fade-in weight, pixel norm (G),
minibatch standard deviation (D) and an equalized learning rate in every layer.
They declare the trait ``growing``: the core tells them the step
(``ganforge_core.Growing``), and their stage and fade-in weight are a pure
function of it (see ``ganforge_progan.options.Growth``). Images of any size up
to 1024 pixels: a size that is not a power of two is worked at the next one
(28x28 MNIST at 32x32, see ``ganforge_progan.networks``). Not class-conditional.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganforge_core import BuildContext, Register, hookimpl
from ganforge_progan.options import DiscriminatorOptions, GeneratorOptions

if TYPE_CHECKING:
    from ganforge_progan.networks import ProGANDiscriminator, ProGANGenerator

PAPER = (
    "Karras et al. 2018, 'Progressive growing of GANs for improved quality, stability, and variation' "
    "(ICLR; code tkarras/progressive_growing_of_gans)"
)


def build_generator(options: GeneratorOptions, ctx: BuildContext) -> ProGANGenerator:
    from ganforge_progan.networks import ProGANGenerator

    return ProGANGenerator(options, ctx.data_shape)


def build_discriminator(options: DiscriminatorOptions, ctx: BuildContext) -> ProGANDiscriminator:
    from ganforge_progan.networks import ProGANDiscriminator

    return ProGANDiscriminator(options, ctx.d_input_shape or ctx.data_shape)  # packing multiplies the channels


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register(
        "progan",
        build_generator,
        options=GeneratorOptions,
        summary="progressive growing from 4x4 with fade-in, pixel norm and equalized learning rate; "
        "any image size (worked at the next power of two)",
        requires={"image"},
        traits={"growing"},
        paper=PAPER,
    )


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register(
        "progan",
        build_discriminator,
        options=DiscriminatorOptions,
        summary="progressive growing from 4x4 with fade-in, minibatch standard deviation and equalized "
        "learning rate; give it G's schedule",
        requires={"image"},
        traits={"growing"},
        paper=PAPER,
    )
