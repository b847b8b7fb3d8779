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

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from ganforge_core import BuildContext, Options, hookimpl
from ganforge_core.layers import ClassProjection, LabelEmbedding, class_count

PAPER = (
    "Lin et al. 2018, 'PacGAN' (architecture of the 2D experiments); "
    "conditional D: Miyato & Koyama 2018, 'cGANs with projection discriminator'"
)


class GeneratorOptions(Options):
    z_dim: int = Field(2, ge=1, description="latent dimensions")
    hidden: int = Field(400, ge=1, description="units per hidden layer")
    depth: int = Field(4, ge=1, description="hidden layers")
    batchnorm: bool = Field(True, description="BatchNorm after each hidden linear layer")
    cells: int = Field(
        0,
        ge=0,
        description="split the latent space into this many equally likely cells (by Phi(z_0)), each with a "
        "learned embedding, so G can cover separate modes with no samples between them; 0: off",
    )
    cell_dim: int = Field(8, ge=1, description="size of a cell's embedding (with cells > 0)")


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
    def __init__(self, options: GeneratorOptions, data_shape: tuple[int, ...], num_classes: int = 0) -> None:
        super().__init__()
        self.z_dim = options.z_dim
        self.data_shape = data_shape
        layers: list[nn.Module] = []
        label_dim = options.z_dim if num_classes else 0
        self.cells = LatentCells(options.cells, options.cell_dim) if options.cells else None
        width = (options.z_dim - 1 + options.cell_dim if self.cells else options.z_dim) + label_dim
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
        self.label_embedding = LabelEmbedding(num_classes, label_dim) if num_classes else None

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.label_embedding is not None:
            z = self.label_embedding.concat(z, labels)
        if self.cells is not None:
            z = self.cells(z)
        return self.net(z).reshape(-1, *self.data_shape)


class LatentCells(nn.Module):
    """Replace z_0 by a learned embedding of its cell ``floor(K * Phi(z_0))``: K equally likely cells."""

    def __init__(self, cells: int, dim: int) -> None:
        super().__init__()
        self.count = cells
        self.embedding = nn.Embedding(cells, dim)

    def cell(self, z0: Tensor) -> Tensor:
        return (torch.special.ndtr(z0) * self.count).long().clamp_(0, self.count - 1)

    def forward(self, z: Tensor) -> Tensor:
        return torch.cat([self.embedding(self.cell(z[:, 0])), z[:, 1:]], dim=1)


class MLPDiscriminator(nn.Module):
    def __init__(self, options: DiscriminatorOptions, data_shape: tuple[int, ...], num_classes: int = 0) -> None:
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
        self.projection = ClassProjection(num_classes, width) if num_classes else None

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.projection is None:
            return self.net(x).flatten()
        features = self.net[:-1](x)
        return self.net[-1](features).flatten() + self.projection(features, labels)


def build_generator(options: GeneratorOptions, ctx: BuildContext) -> MLPGenerator:
    return MLPGenerator(options, ctx.data_shape, class_count(ctx))


def build_discriminator(options: DiscriminatorOptions, ctx: BuildContext) -> MLPDiscriminator:
    return MLPDiscriminator(options, ctx.d_input_shape or ctx.data_shape, class_count(ctx))


@hookimpl
def ganforge_register_generators(register):
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
def ganforge_register_discriminators(register):
    register(
        "mlp",
        build_discriminator,
        options=DiscriminatorOptions,
        summary="fully connected discriminator with maxout (or leaky ReLU) units; no normalisation; "
        "conditional: projection discriminator",
        traits={"label-conditioning"},
        paper=PAPER,
    )
