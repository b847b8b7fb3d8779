"""Path-length regularization (Karras et al. 2020, section 3.2), a lazy G penalty.

For ``y ~ N(0, I) / sqrt(H * W)`` and the ws that drove G's images, the path
length is ``a = sqrt(mean_layers ||J_w^T y||^2)`` per sample (stylegan2-ada's
``pl_lengths``), ``pl_mean`` its running mean (rate ``decay``), and the penalty
``weight * mean((a - pl_mean)^2)``. With the stylegan2 generator the Jacobian is
with respect to w (G is called as ``generator(z, return_ws=True)``, so under
torchrun the call goes through DDP's wrapper). Any other generator has no w: the
Jacobian is then with respect to the latents z, the documented fallback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ganforge_core import GContext, Regularizer
from ganforge_stylegan2.networks import StyleGAN2Generator
from ganforge_stylegan2.options import PathLengthOptions


def has_w(generator: object) -> bool:
    """Whether ``generator`` (or the module a DDP wrapper holds) is the stylegan2 generator."""
    return isinstance(getattr(generator, "module", generator), StyleGAN2Generator)


def path_lengths(images: Tensor, inputs: Tensor, noise: Tensor) -> Tensor:
    """Per sample ``sqrt(mean over layers of ||J^T noise||^2)``, J the Jacobian of ``images`` w.r.t. ``inputs``.

    ``inputs`` is [N, num_ws, w_dim] (ws) or [N, z_dim] (latents: one "layer"). Keeps the graph (create_graph).
    """
    (grads,) = torch.autograd.grad((images * noise).sum(), inputs, create_graph=True)
    grads = grads.float()
    if grads.dim() == 2:
        grads = grads.unsqueeze(1)
    return grads.square().sum(dim=2).mean(dim=1).sqrt()


class PathLength(Regularizer):
    """G's penalty on the deviation of its path lengths from their running mean; ``pl_mean`` is checkpointed."""

    def __init__(self, options: PathLengthOptions) -> None:
        self.options = options
        self.g_penalty_every = options.every
        self.pl_mean = torch.zeros(())

    def g_penalty(self, ctx: GContext) -> Tensor:
        assert ctx.generator is not None and ctx.latents is not None and ctx.fake is not None
        # At least 2 latents (when the batch has them): a G with BatchNorm cannot train on one.
        n = max(min(2, ctx.latents.shape[0]), ctx.latents.shape[0] // self.options.batch_shrink)
        z = ctx.latents[:n].detach()
        if has_w(ctx.generator):
            images, inputs = ctx.generator(z, return_ws=True)
        else:
            inputs = z.requires_grad_(True)
            labels = None if ctx.labels is None else ctx.labels[:n]
            images = ctx.generator(inputs) if labels is None else ctx.generator(inputs, labels)
        flat = images.reshape(n, images.shape[1], -1)
        pixels = flat.shape[-1]  # H * W for images (stylegan2-ada), the feature count for vectors
        noise = torch.randn_like(images) / math.sqrt(pixels)
        lengths = path_lengths(images, inputs, noise)
        if self.pl_mean.device != lengths.device:
            self.pl_mean = self.pl_mean.to(lengths.device)
        pl_mean = self.pl_mean.lerp(lengths.detach().mean(), self.options.decay)
        self.pl_mean.copy_(pl_mean)
        return self.options.weight * (lengths - pl_mean).square().mean()

    def state_dict(self) -> dict[str, Any]:
        return {"pl_mean": self.pl_mean.detach().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "pl_mean" in state:
            self.pl_mean = torch.as_tensor(state["pl_mean"], dtype=torch.float32).clone()
