"""Building blocks for networks that take class labels.

Shared by the built-in architectures (dcgan, mlp, resnet) and available to plugin
authors as ``from ganforge_core.layers import ...``. Importing it imports torch.

* :class:`LabelEmbedding`: a learned class embedding, concatenated to the latent.
* :class:`ClassProjection`: the class term of a projection discriminator (Miyato &
  Koyama 2018), ``<embed(y), phi(x)>``, added to the unconditional logit ``psi(phi(x))``.
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
