"""The options of the R3GAN networks and the image sides they take; importable without torch."""

from __future__ import annotations

from pydantic import Field

from ganforge_core import Options


class _NetworkOptions(Options):
    width: int = Field(
        64, ge=1, le=2048,
        description="channels of every stage (R3GAN's CIFAR-10 model: 768; 64 keeps CPU runs quick)",
    )
    blocks: int = Field(2, ge=1, le=16, description="residual blocks per resolution stage (R3GAN: 2)")
    expansion: int = Field(
        2, ge=1, le=8, description="inverted bottleneck: a block widens to expansion * width inside (R3GAN: 2)"
    )
    group_channels: int = Field(
        16, ge=1, le=1024,
        description="channels per group of each block's grouped 3x3 convolution (R3GAN: 16); where it does not "
        "divide expansion * width, their greatest common divisor",
    )


class GeneratorOptions(_NetworkOptions):
    z_dim: int = Field(64, ge=1, le=4096, description="latent dimensions (R3GAN: 64)")


class DiscriminatorOptions(_NetworkOptions):
    """The stage options alone: D mirrors G's stages."""


def resolution_plan(side: int) -> tuple[int, int]:
    """(base, doublings): the smallest base side in [4, 7] (or the side itself below 4) with
    base * 2**doublings >= side; as the dcgan networks plan theirs."""
    doublings = 0
    while -(-side // 2**doublings) > 7:
        doublings += 1
    return max(min(4, side), -(-side // 2**doublings)), doublings
