"""``zero-gp``: the zero-centred gradient penalty on real-fake interpolates, applied lazily.

``gamma/2 * E ||grad_x D(x_hat)||^2`` with ``x_hat = t * real + (1 - t) * fake``
and ``t ~ U(0, 1)`` drawn per sample (Thanh-Tung et al. 2019, "Improving
generalization and stability of generative adversarial networks", eq. 9:
WGAN-GP's interpolates with R1's target of 0, which keeps D from overfitting the
training samples). ``every`` sets ``d_penalty_every``: the core runs it as its
own D reg phase every k D steps and multiplies it by k (StyleGAN2's lazy
regularization).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ganforge_core import BuildContext, DContext, Regularizer
from ganforge_hamming.options import ZeroGPOptions


class ZeroGP(Regularizer):
    def __init__(self, options: ZeroGPOptions) -> None:
        self.gamma = options.gamma
        self.d_penalty_every = options.every

    def d_penalty(self, ctx: DContext) -> Tensor:
        real, fake = ctx.real.detach(), ctx.fake.detach()
        t = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        between = (t * real + (1 - t) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(ctx.discriminator(between).float().sum(), between, create_graph=True)
        return 0.5 * self.gamma * grad.float().square().flatten(1).sum(1).mean()


def build_zero_gp(options: ZeroGPOptions, ctx: BuildContext) -> ZeroGP:
    return ZeroGP(options)
