"""D penalties on its input gradient: ``r1``, ``r2`` and ``gradient-penalty`` (maths in ganforge_core.penalties)."""

from __future__ import annotations

from torch import Tensor

from ganforge_core import DContext, Regularizer
from ganforge_core.penalties import fake_gradient_penalty, gradient_penalty, real_gradient_penalty
from ganforge_regularizers.options import GradientPenaltyOptions, R1Options, R2Options


class R1(Regularizer):
    """Zero-centred penalty on D's gradient at real data (Mescheder et al. 2018, eq. 9).

    With ``every=k`` the penalty runs lazily (Karras et al. 2020, StyleGAN2,
    section 3.1): the engine's D reg phase computes it on every k-th D step, as a
    D update of its own, multiplied by k, so its weight per step is unchanged on
    average; D's Adam is built with ``lr * c`` and ``betas ** c``, ``c = k / (k + 1)``.
    """

    def __init__(self, options: R1Options) -> None:
        self.options = options
        self.gamma = options.gamma
        self.d_penalty_every = options.every

    def d_penalty(self, ctx: DContext) -> Tensor:
        gamma = self.gamma * self.options.strength(ctx.progress)
        return (0.5 * gamma) * real_gradient_penalty(ctx)


class R2(Regularizer):
    """Zero-centred penalty on D's gradient at generated data (Mescheder et al. 2018, eq. 10; Roth et al. 2017).

    R1's twin on the fake batch; R3GAN (Huang et al. 2024) trains with both at the same gamma. ``every``
    works as R1's does (a lazy D reg phase).
    """

    def __init__(self, options: R2Options) -> None:
        self.options = options
        self.gamma = options.gamma
        self.d_penalty_every = options.every

    def d_penalty(self, ctx: DContext) -> Tensor:
        gamma = self.gamma * self.options.strength(ctx.progress)
        return (0.5 * gamma) * fake_gradient_penalty(ctx)


class GradientPenalty(Regularizer):
    """WGAN-GP's penalty on interpolates (Gulrajani et al. 2017, eq. 3), added to any loss.

    Kurach et al. 2019 found it helps the non-saturating loss as well.
    """

    def __init__(self, options: GradientPenaltyOptions) -> None:
        self.options = options
        self.weight = options.weight
        self.one_sided = options.penalty == "one-sided"

    def d_penalty(self, ctx: DContext) -> Tensor:
        weight = self.weight * self.options.strength(ctx.progress)
        return weight * gradient_penalty(ctx, one_sided=self.one_sided)
