"""The fully connected networks of ``ganforge_mlp`` (see the package for what they do)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ganforge_core.layers import ClassProjection, LabelEmbedding
from ganforge_mlp import DiscriminatorOptions, GeneratorOptions


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
