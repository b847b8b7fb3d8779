"""A residual MLP generator for vectors or images of any shape."""

from __future__ import annotations

import math
from typing import Literal

from ganforge_core import BuildContext, Options
from pydantic import Field
from torch import Tensor, nn


class ResMLPOptions(Options):
    z_dim: int = Field(32, ge=1, description="latent dimensions")
    width: int = Field(256, ge=1, description="units in every residual block")
    blocks: int = Field(2, ge=1, description="residual blocks")
    norm: Literal["layer", "none"] = Field(
        "layer", description="normalisation in each block; LayerNorm does not couple the samples of a batch"
    )


def _norm(kind: str, width: int) -> nn.Module:
    return nn.LayerNorm(width) if kind == "layer" else nn.Identity()


class ResidualBlock(nn.Module):
    """Pre-activation block: x + Linear(ReLU(Norm(Linear(ReLU(Norm(x))))))."""

    def __init__(self, width: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(norm, width),
            nn.ReLU(),
            nn.Linear(width, width),
            _norm(norm, width),
            nn.ReLU(),
            nn.Linear(width, width),
        )

    def forward(self, x: Tensor) -> Tensor:
        update: Tensor = self.body(x)
        return x + update


class ResMLPGenerator(nn.Module):
    def __init__(self, options: ResMLPOptions, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.z_dim = options.z_dim  # the engine draws latents of shape [N, z_dim]
        self.data_shape = data_shape
        self.net = nn.Sequential(
            nn.Linear(options.z_dim, options.width),
            *(ResidualBlock(options.width, options.norm) for _ in range(options.blocks)),
            _norm(options.norm, options.width),
            nn.ReLU(),
            nn.Linear(options.width, math.prod(data_shape)),
        )
        # Image datasets ([C, H, W]) are scaled to [-1, 1]; vectors are not bounded.
        self.squash = nn.Tanh() if len(data_shape) == 3 else nn.Identity()

    def forward(self, z: Tensor) -> Tensor:
        samples: Tensor = self.squash(self.net(z))
        return samples.reshape(-1, *self.data_shape)


def build_generator(options: ResMLPOptions, ctx: BuildContext) -> ResMLPGenerator:
    return ResMLPGenerator(options, ctx.data_shape)
