"""The options of the losses that have some; importable without torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ganforge_core import Options


class LeastSquaresOptions(Options):
    g_target: float = Field(
        1.0, description="c: the output G wants D to give its samples (1 with the 0-1 coding, eq. 9)"
    )


class WGANOptions(Options):
    clip: float = Field(0.01, gt=0, description="c: D's parameters are clipped to [-c, c] after every D step")


class WGANGPOptions(Options):
    weight: float = Field(10.0, ge=0, description="lambda, the gradient penalty's weight")
    penalty: Literal["two-sided", "one-sided"] = Field(
        "two-sided", description="two-sided: (|g|-1)^2; one-sided: max(0, |g|-1)^2"
    )
