"""The options of the losses that have some; importable without torch."""

from __future__ import annotations

from pydantic import Field

from ganforge_core import Options
from ganforge_core.penalties import GradientPenaltyOptions


class LeastSquaresOptions(Options):
    g_target: float = Field(
        1.0, description="c: the output G wants D to give its samples (1 with the 0-1 coding, eq. 9)"
    )


class WGANOptions(Options):
    clip: float = Field(0.01, gt=0, description="c: D's parameters are clipped to [-c, c] after every D step")


class WGANGPOptions(GradientPenaltyOptions):
    """The penalty's weight and shape, shared with the ``gradient-penalty`` regularizer."""
