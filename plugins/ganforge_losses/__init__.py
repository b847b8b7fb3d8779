"""Adversarial losses: the original minimax (``bce``), ``non-saturating`` and ``wgan-gp``."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ganforge_core import DContext, GContext, Loss, NoOptions, Options, Recommendation, hookimpl

GOODFELLOW = "Goodfellow et al. 2014, 'Generative adversarial nets'"
DCGAN_ADAM = Recommendation(lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), d_steps=1)
WGAN_GP_ADAM = Recommendation(lr_g=1e-4, lr_d=1e-4, betas=(0.0, 0.9), d_steps=5)


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _d_bce(real: Tensor, fake: Tensor, ctx: DContext) -> Tensor:
    return _bce(real, ctx.targets.real) + _bce(fake, ctx.targets.fake)


class MinimaxLoss(Loss):
    """D maximises log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z)))."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        return _d_bce(real_logits, fake_logits, ctx)

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return -_bce(fake_logits, ctx.targets.fake)


class NonSaturatingLoss(MinimaxLoss):
    """As ``bce`` for D; G maximises log D(G(z)), which keeps its gradient when D wins."""

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return _bce(fake_logits, 1.0)


class WGANGPOptions(Options):
    weight: float = Field(10.0, ge=0, description="lambda, the gradient penalty's weight")
    penalty: Literal["two-sided", "one-sided"] = Field(
        "two-sided", description="two-sided: (|g|-1)^2; one-sided: max(0, |g|-1)^2"
    )


def gradient_penalty(ctx: DContext, one_sided: bool = False) -> Tensor:
    """Mean of (||grad_x D(x_hat)|| - 1)^2 at random points between real and fake samples."""
    shape = (ctx.real.shape[0],) + (1,) * (ctx.real.dim() - 1)
    mix = torch.rand(shape, device=ctx.real.device, dtype=ctx.real.dtype)
    between = (mix * ctx.real.detach() + (1 - mix) * ctx.fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(ctx.discriminator(between).sum(), between, create_graph=True)
    excess = grad.flatten(1).norm(dim=1) - 1
    if one_sided:
        excess = excess.clamp(min=0)
    return excess.square().mean()


class WGANGPLoss(Loss):
    """Wasserstein critic loss with a gradient penalty (Gulrajani et al. 2017, Algorithm 1)."""

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


@hookimpl
def ganforge_register_losses(register):
    register(
        "bce",
        lambda options, ctx: MinimaxLoss(),
        options=NoOptions,
        summary="the original minimax loss: binary cross-entropy for D, -BCE(fake) for G",
        traits={"targets", "graph-safe"},
        recommends=DCGAN_ADAM,
        paper=GOODFELLOW,
    )
    register(
        "non-saturating",
        lambda options, ctx: NonSaturatingLoss(),
        options=NoOptions,
        summary="BCE for D; G maximises log D(G(z)) (the -log D trick)",
        traits={"targets", "graph-safe"},
        recommends=DCGAN_ADAM,
        paper=GOODFELLOW + ", section 3",
    )
    register(
        "wgan-gp",
        lambda options, ctx: WGANGPLoss(options),
        options=WGANGPOptions,
        summary="Wasserstein critic with gradient penalty; Adam 1e-4, betas (0, 0.9), 5 critic steps",
        traits={"wasserstein", "gradient-penalty", "graph-safe"},
        conflicts={
            "batchnorm-in-d": "BatchNorm couples the samples of a batch, which invalidates the per-sample "
            "gradient penalty; use a critic without it (dcgan: norm=layer or norm=none)"
        },
        recommends=WGAN_GP_ADAM,
        paper="Gulrajani et al. 2017, 'Improved training of Wasserstein GANs'",
    )
