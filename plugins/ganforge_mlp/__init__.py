"""Fully connected generator and discriminator; the PacGAN 2D-mixture architecture by default.

In ``--conditional`` runs G appends a learned class embedding (``z_dim`` dimensions)
to z and D is a projection discriminator (Miyato & Koyama 2018) whose features
phi(x) are its last hidden layer. Unconditional networks are unchanged by this.

With ``cells=K`` the generator partitions its Gaussian latent space into K
equally likely cells by the first coordinate (cell ``floor(K * Phi(z_0))``, Phi
the standard normal CDF) and feeds a learned embedding of the cell in place of
``z_0``. A continuous map of a connected latent space cannot cover a target made
of separate pieces without putting samples between them (Khayatkhoei et al. 2018;
Tanielian et al. 2020); the cells give G a cut between pieces for free, so on
2D mixtures almost every sample lands on a mode. The latent is still
``z ~ N(0, I)``: nothing else in ganforge changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ganforge_core import BuildContext, Options, Register, hookimpl

if TYPE_CHECKING:
    from ganforge_mlp.networks import MLPDiscriminator, MLPGenerator

PAPER = (
    "Lin et al. 2018, 'PacGAN' (architecture of the 2D experiments); "
    "conditional D: Miyato & Koyama 2018, 'cGANs with projection discriminator'"
)


class GeneratorOptions(Options):
    z_dim: int = Field(2, ge=1, le=4096, description="latent dimensions")
    hidden: int = Field(400, ge=1, le=8192, description="units per hidden layer")
    depth: int = Field(4, ge=1, le=64, description="hidden layers")
    batchnorm: bool = Field(True, description="BatchNorm after each hidden linear layer")
    cells: int = Field(
        0,
        ge=0, le=100_000,
        description="split the latent space into this many equally likely cells (by Phi(z_0)), each with a "
        "learned embedding, so G can cover separate modes with no samples between them; 0: off",
    )
    cell_dim: int = Field(8, ge=1, le=4096, description="size of a cell's embedding (with cells > 0)")


class DiscriminatorOptions(Options):
    hidden: int = Field(200, ge=1, le=8192, description="units per hidden layer")
    depth: int = Field(3, ge=1, le=64, description="hidden layers")
    activation: Literal["maxout", "leaky-relu"] = Field("maxout", description="hidden activation")
    pieces: int = Field(5, ge=2, le=16, description="linear pieces per maxout unit")


def build_generator(options: GeneratorOptions, ctx: BuildContext) -> MLPGenerator:
    from ganforge_core.layers import class_count
    from ganforge_mlp.networks import MLPGenerator

    return MLPGenerator(options, ctx.data_shape, class_count(ctx))


def build_discriminator(options: DiscriminatorOptions, ctx: BuildContext) -> MLPDiscriminator:
    from ganforge_core.layers import class_count
    from ganforge_mlp.networks import MLPDiscriminator

    return MLPDiscriminator(options, ctx.d_input_shape or ctx.data_shape, class_count(ctx))


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register(
        "mlp",
        build_generator,
        options=GeneratorOptions,
        summary="fully connected generator (ReLU, optional BatchNorm); vectors or flattened images; "
        "conditional: class embedding concatenated to z",
        traits=lambda o: {"label-conditioning"} | ({"batchnorm-in-g"} if o.batchnorm else set()),
        paper=PAPER,
    )


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register(
        "mlp",
        build_discriminator,
        options=DiscriminatorOptions,
        summary="fully connected discriminator with maxout (or leaky ReLU) units; no normalisation; "
        "conditional: projection discriminator",
        traits={"label-conditioning", "per-sample"},
        paper=PAPER,
    )
