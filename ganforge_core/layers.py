"""Building blocks for networks that take class labels.

Shared by the built-in architectures (dcgan, mlp, resnet) and available to plugin
authors as ``from ganforge_core.layers import ...``. Importing it imports torch.

* :class:`LabelEmbedding`: a learned class embedding, concatenated to the latent.
* :class:`ClassProjection`: the class term of a projection discriminator (Miyato &
  Koyama 2018), ``<embed(y), phi(x)>``, added to the unconditional logit ``psi(phi(x))``.
* :class:`ClassBatchNorm2d`: BatchNorm whose gain and bias are looked up per class
  (conditional BatchNorm, de Vries et al. 2017; as in SN-GAN's and BigGAN's generators).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge_core import BuildContext, ConfigError


def class_count(ctx: BuildContext) -> int:
    """Classes to condition on: the dataset's in a ``--conditional`` run, else 0 (unconditional)."""
    if not ctx.conditional:
        return 0
    if ctx.num_classes < 1:
        raise ConfigError("a class-conditional network needs a dataset with at least one class")
    return ctx.num_classes


def require_labels(labels: Tensor | None, network: str) -> Tensor:
    if labels is None:
        raise ValueError(f"this {network} was built class-conditional: call it with labels")
    return labels


class LabelEmbedding(nn.Embedding):
    """One learned vector per class, appended to the latent code."""

    def concat(self, z: Tensor, labels: Tensor | None) -> Tensor:
        embedded = self(require_labels(labels, "generator"))
        return torch.cat([z, embedded.to(z.dtype)], dim=1)


class ClassProjection(nn.Module):
    """``<embed(y), features>`` per sample, one embedding row per class.

    The embedding is held as the weight of a bias-free ``nn.Linear`` (one column per
    class) so that the ``spectral-norm`` regularizer, which normalises every linear
    layer of D, normalises it too, as the projection discriminator paper does.
    """

    def __init__(self, num_classes: int, features: int) -> None:
        super().__init__()
        self.embed = nn.Linear(num_classes, features, bias=False)
        nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, features: Tensor, labels: Tensor | None) -> Tensor:
        class_vectors = F.embedding(require_labels(labels, "discriminator"), self.embed.weight.t())
        return (class_vectors.to(features.dtype) * features).sum(1)


class ClassBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm; with ``num_classes > 0``, its gain and bias are looked up per class (conditional BN).

    With ``num_classes == 0`` it is exactly ``nn.BatchNorm2d`` (same parameters and state-dict
    keys). Gains start at 1 plus N(0, 0.02) noise (as common PyTorch ports of the projection
    cGAN do) rather than exactly 1, so the classes' samples differ from the first step.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(channels, affine=not num_classes)
        self.class_gain = self.class_bias = None
        if num_classes:
            self.class_gain = nn.Embedding(num_classes, channels)
            self.class_bias = nn.Embedding(num_classes, channels)
            nn.init.normal_(self.class_gain.weight, 1.0, 0.02)
            nn.init.zeros_(self.class_bias.weight)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        x = super().forward(x)
        if self.class_gain is None or self.class_bias is None:
            return x
        labels = require_labels(labels, "generator")
        gain, bias = self.class_gain(labels), self.class_bias(labels)
        return x * gain[:, :, None, None].to(x.dtype) + bias[:, :, None, None].to(x.dtype)
