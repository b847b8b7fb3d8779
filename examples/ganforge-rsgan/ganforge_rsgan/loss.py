"""The relativistic standard GAN loss (Jolicoeur-Martineau 2018, "RSGAN").

D is trained to say how much more realistic a real sample is than a fake one,
``sigmoid(C(real) - C(fake))``, and G to make the fake look the more realistic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from ganforge_core import BuildContext, DContext, GContext, Loss, NoOptions, Recommendation
from torch import Tensor

PAPER = "Jolicoeur-Martineau 2018, 'The relativistic discriminator: a key element missing from standard GAN'"

# The paper's first, DCGAN-style setup: Adam lr 2e-4, betas (0.5, 0.999), one D step per G step.
PAPER_ADAM = Recommendation(lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), d_steps=1)


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class RelativisticStandardLoss(Loss):
    """BCE on the difference of the critic's outputs on paired real and fake samples."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        # ctx.targets.real is 1 unless a regularizer (label-smoothing) lowers it.
        return _bce(real_logits - fake_logits, ctx.targets.real)

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return _bce(fake_logits - ctx.real_logits(), 1.0)


def build_loss(options: NoOptions, ctx: BuildContext) -> RelativisticStandardLoss:
    return RelativisticStandardLoss()
