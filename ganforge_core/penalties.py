"""Penalties on D's input gradient, for any plugin's loss or regularizer.

The built-in ``wgan-gp`` loss and the ``gradient-penalty``, ``r1`` and ``r2``
regularizers compute their penalties here, and a third-party plugin can do the
same instead of importing another plugin:

* :func:`gradient_penalty`: WGAN-GP's ``(||grad D(x_hat)|| - 1)^2`` at random
  points between real and fake samples (a soft 1-Lipschitz constraint), with its
  options base :class:`GradientPenaltyOptions`.
* :func:`real_gradient_penalty` and :func:`fake_gradient_penalty`: the
  zero-centred ``||grad D(x)||^2`` at real samples (R1) or fake ones (R2),
  without their ``gamma/2``.

A component that uses one declares the trait ``input-gradient-penalty``, the
batch it is computed on (``penalty-on-real`` for R1, ``penalty-on-fake`` for R2,
both for WGAN-GP's interpolates), and ``lipschitz-penalty`` for WGAN-GP's; it
refuses a BatchNorm critic with
:data:`NEEDS_NO_BATCHNORM` (see :mod:`ganforge_core.traits`). torch is imported
when a penalty is computed, not with this module, so a plugin's ``__init__``
may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ganforge_core.components import DContext, Options

if TYPE_CHECKING:
    from torch import Tensor

NEEDS_NO_BATCHNORM = (
    "BatchNorm couples the samples of a batch, which invalidates the per-sample gradient penalty; "
    "use a critic without it (dcgan: norm=layer or norm=none)"
)


class GradientPenaltyOptions(Options):
    """The weight and shape of WGAN-GP's penalty (the ``wgan-gp`` loss's options, and more)."""

    weight: float = Field(10.0, ge=0, description="lambda, the gradient penalty's weight")
    penalty: Literal["two-sided", "one-sided"] = Field(
        "two-sided", description="two-sided: (|g|-1)^2; one-sided: max(0, |g|-1)^2"
    )


def gradient_penalty(ctx: DContext, one_sided: bool = False) -> Tensor:
    """Mean of (||grad_x D(x_hat)|| - 1)^2 at random points between real and fake samples.

    Gulrajani et al. 2017, eq. 3. One-sided: only norms above 1 are penalised
    (their appendix; Petzka et al. 2018 argue for it).
    """
    import torch

    shape = (ctx.real.shape[0],) + (1,) * (ctx.real.dim() - 1)
    mix = torch.rand(shape, device=ctx.real.device, dtype=ctx.real.dtype)
    between = (mix * ctx.real.detach() + (1 - mix) * ctx.fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(ctx.discriminator(between).sum(), between, create_graph=True)
    excess = grad.flatten(1).norm(dim=1) - 1
    if one_sided:
        excess = excess.clamp(min=0)
    return excess.square().mean()


def zero_centred_penalty(discriminator: Callable[[Tensor], Tensor], samples: Tensor) -> Tensor:
    """Mean over ``samples`` of ||grad_x D(x)||^2, differentiable in D's parameters."""
    import torch

    inputs = samples.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(inputs).sum(), inputs, create_graph=True)
    return grad.square().flatten(1).sum(dim=1).mean()


def real_gradient_penalty(ctx: DContext) -> Tensor:
    """Mean of ||grad_x D(x)||^2 over the real batch: R1 without its gamma/2 (Mescheder et al. 2018, eq. 9)."""
    return zero_centred_penalty(ctx.discriminator, ctx.real)


def fake_gradient_penalty(ctx: DContext) -> Tensor:
    """Mean of ||grad_x D(x)||^2 over the fake batch: R2 without its gamma/2 (Roth et al. 2017; Huang et al. 2024)."""
    return zero_centred_penalty(ctx.discriminator, ctx.fake)
