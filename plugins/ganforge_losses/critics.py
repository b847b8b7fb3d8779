"""Losses on an unbounded critic: ``wgan`` (weight clipping), ``wgan-gp`` and ``hinge``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge_core import DContext, GContext, Loss
from ganforge_core.penalties import gradient_penalty
from ganforge_losses.options import WGANGPOptions, WGANOptions


class WGANLoss(Loss):
    """Wasserstein critic kept Lipschitz by clipping its weights (Arjovsky et al. 2017, Algorithm 1).

    A critic's scores are defined up to a constant, so no threshold separates real from fake.
    """

    decision_threshold = None

    def __init__(self, options: WGANOptions) -> None:
        self.clip = options.clip

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return -fake_logits.mean()

    @torch.no_grad()
    def after_d_step(self, discriminator: nn.Module) -> None:
        # In place on the tensors, so a captured CUDA graph replays it.
        for parameter in discriminator.parameters():
            parameter.clamp_(-self.clip, self.clip)


class WGANGPLoss(Loss):
    """Wasserstein critic loss with a gradient penalty (Gulrajani et al. 2017, Algorithm 1)."""

    decision_threshold = None  # a critic's scores are defined up to a constant

    def __init__(self, options: WGANGPOptions) -> None:
        self.options = options
        self._last_penalty: Tensor | None = None

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        penalty = gradient_penalty(ctx, one_sided=self.options.penalty == "one-sided")
        self._last_penalty = penalty.detach()
        return fake_logits.mean() - real_logits.mean() + self.options.weight * penalty

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return -fake_logits.mean()

    def extra_stats(self) -> dict[str, Tensor]:
        return {} if self._last_penalty is None else {"gp": self._last_penalty}


class HingeLoss(Loss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018, eq. 17): D wants real >= 1, fake <= -1; G raises fakes."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return -fake_logits.mean()
