"""Losses that score D's logits against targets (1 for real, 0 for fake), so label smoothing applies."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge_core import DContext, GContext, Loss
from ganforge_losses.options import LeastSquaresOptions


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _d_bce(real: Tensor, fake: Tensor, ctx: DContext) -> Tensor:
    return _bce(real, ctx.targets.real) + _bce(fake, ctx.targets.fake)


class MinimaxLoss(Loss):
    """D maximises log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z))).

    Targets (label smoothing) are D's alone: G's objective scores its samples
    against the true labels (0 here, 1 for the non-saturating G), whatever D's
    targets are smoothed to.
    """

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        return _d_bce(real_logits, fake_logits, ctx)

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return -_bce(fake_logits, 0.0)


class NonSaturatingLoss(MinimaxLoss):
    """As ``bce`` for D; G maximises log D(G(z)), which keeps its gradient when D wins."""

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return _bce(fake_logits, 1.0)


class LeastSquaresLoss(Loss):
    """LSGAN (Mao et al. 2017, eq. 2): squared distances of D's raw outputs to the targets.

    D pulls real outputs to b (the real target) and fake outputs to a (the fake
    target); G pulls fake outputs to c. With a=0, b=1, c=1 this is the paper's
    0-1 coding; label smoothing moves b. D calls an output real above 0.5, halfway
    between the 0-1 coding's targets.
    """

    decision_threshold = 0.5

    def __init__(self, options: LeastSquaresOptions) -> None:
        self.options = options

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        real = (real_logits - ctx.targets.real).square().mean()
        fake = (fake_logits - ctx.targets.fake).square().mean()
        return 0.5 * (real + fake)

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return 0.5 * (fake_logits - self.options.g_target).square().mean()


class RelativisticAverageLoss(Loss):
    """RaSGAN (Jolicoeur-Martineau 2018, eqs. 8-9): D judges each sample against the other side's mean.

    D: BCE(C(x_r) - mean C(x_f), real) + BCE(C(x_f) - mean C(x_r), fake).
    G: the same with the roles swapped, so it needs D's real logits too
    (``ctx.real_logits()``), and it is non-saturating: G's gradient does not
    vanish when D is confident.

    Its raw logits make no call on their own (only their difference from the other
    side's mean does), so it declares no decision threshold.
    """

    decision_threshold = None

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        real_vs_fake = real_logits - fake_logits.mean()
        fake_vs_real = fake_logits - real_logits.mean()
        return _bce(real_vs_fake, ctx.targets.real) + _bce(fake_vs_real, ctx.targets.fake)

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        real_logits = ctx.real_logits()
        fake_vs_real = fake_logits - real_logits.mean()
        real_vs_fake = real_logits - fake_logits.mean()
        return _bce(fake_vs_real, 1.0) + _bce(real_vs_fake, 0.0)
