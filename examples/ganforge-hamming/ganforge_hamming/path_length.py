"""``z-path-length``: StyleGAN2's path-length regularization of G, on the latent z.

For latents z and samples G(z), with y ~ N(0, I) / sqrt(numel of one sample),
the length ``|J^T y|`` (J = dG/dz of one sample) is ``||d sum(G(z) * y) / dz||_2``
per sample. With ``a`` the moving average of the mean length (decay 0.99, from 0),
the penalty is ``weight * mean((|J^T y| - a)^2)``: G is pulled toward a Jacobian
whose every direction stretches a step in z by the same amount (Karras et al.
2020, section 3.2; StyleGAN2 takes it on w, ganforge's generators have only z).

As in StyleGAN2's ``loss.py``, ``a`` is first moved toward this batch's mean and
the new value is used (its gradient flows through that 1 - decay share), and
the penalty runs lazily: ``every`` sets ``g_penalty_every``, so the core runs it
as its own G reg phase every k steps and multiplies it by k.

The engine's latents do not require a gradient, so the penalty runs G again, on
a copy of the phase's latents that does, to differentiate with respect to z.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ganforge_core import BuildContext, GContext, Regularizer
from ganforge_hamming.options import PathLengthOptions


class PathLength(Regularizer):
    def __init__(self, options: PathLengthOptions, device: torch.device) -> None:
        self.weight = options.weight
        self.decay = options.decay
        self.g_penalty_every = options.every
        self.mean = torch.zeros((), device=device)  # a, kept on the device: no host sync per phase

    def lengths(self, ctx: GContext) -> Tensor:
        """``|J^T y|`` for each of the phase's latents, with fresh y."""
        assert ctx.generator is not None and ctx.latents is not None, "the core passes G and its latents"
        z = ctx.latents.detach().requires_grad_(True)
        fake = ctx.generator(z) if ctx.labels is None else ctx.generator(z, ctx.labels)
        y = torch.randn_like(fake) / math.sqrt(fake[0].numel())
        (grad,) = torch.autograd.grad((fake * y).sum(), z, create_graph=True)
        return grad.float().square().flatten(1).sum(1).sqrt()

    def g_penalty(self, ctx: GContext) -> Tensor:
        lengths = self.lengths(ctx)
        mean = self.mean.lerp(lengths.mean(), 1 - self.decay)  # a <- decay * a + (1 - decay) * mean
        self.mean.copy_(mean.detach())
        return self.weight * (lengths - mean).square().mean()

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "mean" in state:  # the core passes {} for a checkpoint saved without this regularizer
            self.mean.copy_(state["mean"])


def build_path_length(options: PathLengthOptions, ctx: BuildContext) -> PathLength:
    return PathLength(options, ctx.device)
