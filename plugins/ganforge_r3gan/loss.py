"""RpGAN, the relativistic pairing loss of R3GAN (Huang et al. 2024, eq. 2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ganforge_core import DContext, GContext, Loss


class RelativisticPairingLoss(Loss):
    """D: mean softplus(-(D(x_i) - D(G(z_i)))); G: mean softplus(-(D(G(z_i)) - D(x_i))).

    Each fake is judged against one real sample (the i-th of each batch), not against
    the other side's mean as RaSGAN (``relativistic``) does; R3GAN shows that this
    pairing, with R1 and R2, is locally convergent and does not drop modes. Only the
    difference of two logits means anything, so D's raw logit makes no call on its own.
    """

    decision_threshold = None

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        return F.softplus(fake_logits - real_logits).mean()

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        return F.softplus(ctx.real_logits() - fake_logits).mean()
