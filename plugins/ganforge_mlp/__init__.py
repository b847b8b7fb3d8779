"""Fully connected generator and discriminator; the PacGAN 2D-mixture architecture by default."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from ganforge_core import BuildContext, Options, hookimpl

PAPER = "Lin et al. 2018, 'PacGAN' (architecture of the 2D experiments)"


class GeneratorOptions(Options):
    z_dim: int = Field(2, ge=1, description="latent dimensions")
    hidden: int = Field(400, ge=1, description="units per hidden layer")
    depth: int = Field(4, ge=1, description="hidden layers")
    batchnorm: bool = Field(True, description="BatchNorm after each hidden linear layer")


class DiscriminatorOptions(Options):
    hidden: int = Field(200, ge=1, description="units per hidden layer")
    depth: int = Field(3, ge=1, description="hidden layers")
    activation: Literal["maxout", "leaky-relu"] = Field("maxout", description="hidden activation")
    pieces: int = Field(5, ge=2, description="linear pieces per maxout unit")


class Maxout(nn.Module):
    def __init__(self, d_in: int, d_out: int, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(d_in, d_out * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).unflatten(-1, (-1, self.pieces)).amax(-1)


class MLPGenerator(nn.Module):
    def __init__(self, options: GeneratorOptions, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.z_dim = options.z_dim
        self.data_shape = data_shape
        layers: list[nn.Module] = []
        width = options.z_dim
        for _ in range(options.depth):
            layers.append(nn.Linear(width, options.hidden, bias=not options.batchnorm))
            if options.batchnorm:
                layers.append(nn.BatchNorm1d(options.hidden))
            layers.append(nn.ReLU(inplace=True))
            width = options.hidden
        layers.append(nn.Linear(width, math.prod(data_shape)))
        if len(data_shape) == 3:  # images live in [-1, 1]
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(-1, *self.data_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, options: DiscriminatorOptions, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(data_shape)
        for _ in range(options.depth):
            if options.activation == "maxout":
                layers.append(Maxout(width, options.hidden, options.pieces))
            else:
                layers += [nn.Linear(width, options.hidden), nn.LeakyReLU(0.2, inplace=True)]
            width = options.hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()


def build_generator(options: GeneratorOptions, ctx: BuildContext) -> MLPGenerator:
    return MLPGenerator(options, ctx.data_shape)


def build_discriminator(options: DiscriminatorOptions, ctx: BuildContext) -> MLPDiscriminator:
    return MLPDiscriminator(options, ctx.d_input_shape or ctx.data_shape)


@hookimpl
def ganforge_register_generators(register):
    register(
        "mlp",
        build_generator,
        options=GeneratorOptions,
        summary="fully connected generator (ReLU, optional BatchNorm); vectors or flattened images",
        traits=lambda o: {"batchnorm-in-g"} if o.batchnorm else set(),
        paper=PAPER,
    )


@hookimpl
def ganforge_register_discriminators(register):
    register(
        "mlp",
        build_discriminator,
        options=DiscriminatorOptions,
        summary="fully connected discriminator with maxout (or leaky ReLU) units; no normalisation",
        paper=PAPER,
    )
