"""The options of the SN-GAN residual networks, and the image sides they take; no torch."""

from __future__ import annotations

import math

from pydantic import Field

from ganforge_core import Options


class GeneratorOptions(Options):
    z_dim: int = Field(128, ge=1, le=4096, description="latent dimensions (SN-GAN: 128)")
    width: int = Field(
        64, ge=1, le=2048,
        description="channels of every residual block (SN-GAN: 256 at 32 px; 64 keeps CPU runs quick)"
    )


class DiscriminatorOptions(Options):
    width: int = Field(
        64, ge=1, le=2048,
        description="channels of every residual block (SN-GAN: 128 at 32 px; 64 keeps CPU runs quick)"
    )


def doublings(side: int) -> int | None:
    """k with side == 4 * 2**k and k >= 1, else None."""
    k = int(math.log2(side / 4)) if side >= 8 else 0
    return k if k >= 1 and side == 4 * 2**k else None
