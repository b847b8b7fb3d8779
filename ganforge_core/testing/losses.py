"""The check of a loss: both phases, their gradients and where they go."""

from __future__ import annotations

import torch
from torch import Tensor

from ganforge_core.components import DContext, GContext, Loss, Targets
from ganforge_core.testing.objects import TinyCritic, TinyGenerator, _check, _finite


def check_loss(loss: Loss, n: int = 8, seed: int = 0) -> None:
    """Both phases give finite scalars whose gradients reach D (D phase) and G (G phase), and only them."""
    _check(isinstance(loss, Loss), f"a loss subclasses ganforge_core.Loss, got {type(loss).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic, generator = TinyCritic(), TinyGenerator((2,))
        real = torch.randn(n, 2)
        fake = generator(torch.randn(n, 3)).detach()
        ctx = DContext(critic, real, fake, Targets(), step=0, progress=0.0)
        d_loss = loss.d_loss(critic(real), critic(fake), ctx)
        _check(
            isinstance(d_loss, Tensor) and d_loss.dim() == 0 and _finite(d_loss),
            f"d_loss must be a finite scalar tensor, got {d_loss!r}",
        )
        _check(d_loss.requires_grad, "d_loss has no graph back to D (was something detached?)")
        d_loss.backward()
        d_grads = [p.grad for p in critic.parameters()]
        _check(all(g is not None and _finite(g) for g in d_grads), "d_loss: D has a missing or non-finite gradient")
        _check(any(g.abs().sum() > 0 for g in d_grads if g is not None), "d_loss: every gradient to D is zero")
        for name, value in loss.extra_stats().items():
            _check(
                isinstance(value, Tensor) and not value.requires_grad and _finite(value),
                f"extra_stats()['{name}'] must be a finite tensor detached from the graph",
            )
        loss.after_d_step(critic)
        _check(all(_finite(p) for p in critic.parameters()), "after_d_step left non-finite D parameters")

        critic.requires_grad_(False)  # as in ganforge's G phase
        g_ctx = GContext(real_logits=lambda: critic(real), targets=Targets(), step=0, progress=0.0)
        g_loss = loss.g_loss(critic(generator(torch.randn(n, 3))), g_ctx)
        _check(
            isinstance(g_loss, Tensor) and g_loss.dim() == 0 and _finite(g_loss),
            f"g_loss must be a finite scalar tensor, got {g_loss!r}",
        )
        _check(g_loss.requires_grad, "g_loss has no graph back to G (was something detached?)")
        g_loss.backward()
        g_grads = [p.grad for p in generator.parameters()]
        _check(all(g is not None and _finite(g) for g in g_grads), "g_loss: G has a missing or non-finite gradient")
        _check(any(g.abs().sum() > 0 for g in g_grads if g is not None), "g_loss: every gradient to G is zero")
