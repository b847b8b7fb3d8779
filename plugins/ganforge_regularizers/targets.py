"""``label-smoothing``: softer targets for D."""

from __future__ import annotations

from pydantic import Field

from ganforge_core import Options, Regularizer, Targets


class LabelSmoothingOptions(Options):
    real: float = Field(0.9, gt=0.5, le=1.0, description="target for real samples")
    fake: float | None = Field(
        None,
        ge=0.0,
        lt=0.5,
        description="target for fake samples; unset leaves them alone (one-sided, as Salimans et al. advise)",
    )


class LabelSmoothing(Regularizer):
    """One-sided label smoothing: D's real targets become ``real`` (Salimans et al. 2016, section 3.4).

    Smoothing the fake targets too puts G's density in the numerator of D's
    optimum: where G has mass and the data has none, D still calls G's samples
    partly real, so they have no reason to move toward the data. It is
    available, but not the default.
    """

    def __init__(self, options: LabelSmoothingOptions) -> None:
        self.options = options

    def adjust_targets(self, targets: Targets) -> Targets:
        fake = targets.fake if self.options.fake is None else self.options.fake
        return Targets(real=self.options.real, fake=fake)
