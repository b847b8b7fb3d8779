"""Gradient penalties on D's input gradient, shared by the ``wgan-gp`` loss and regularizers."""

from __future__ import annotations

import torch
from torch import Tensor

from ganforge_core import DContext


def gradient_penalty(ctx: DContext, one_sided: bool = False) -> Tensor:
    """Mean of (||grad_x D(x_hat)|| - 1)^2 at random points between real and fake samples.

    Gulrajani et al. 2017, eq. 3. One-sided: only norms above 1 are penalised
    (their appendix; Petzka et al. 2018 argue for it).
    """
    shape = (ctx.real.shape[0],) + (1,) * (ctx.real.dim() - 1)
    mix = torch.rand(shape, device=ctx.real.device, dtype=ctx.real.dtype)
    between = (mix * ctx.real.detach() + (1 - mix) * ctx.fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(ctx.discriminator(between).sum(), between, create_graph=True)
    excess = grad.flatten(1).norm(dim=1) - 1
    if one_sided:
        excess = excess.clamp(min=0)
    return excess.square().mean()


def real_gradient_penalty(ctx: DContext) -> Tensor:
    """Mean of ||grad_x D(x)||^2 over the real batch: R1 without its gamma/2 (Mescheder et al. 2018)."""
    real = ctx.real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(ctx.discriminator(real).sum(), real, create_graph=True)
    return grad.square().flatten(1).sum(dim=1).mean()
