"""The check of a loss: both phases, their gradients, where they go and which way they point."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ganforge_core.components import DContext, GContext, Loss, Targets
from ganforge_core.testing.gradients import check_gradient_is_derivative, check_penalty_batches
from ganforge_core.testing.objects import TinyCritic, TinyGenerator, _check, _finite, _seeded

# Where each phase's direction is checked. D phase: D cannot yet tell reals from fakes, both
# scored between the fake target 0 and the real target 1 (so also inside hinge's margins and
# short of LSGAN's targets). G phase: D rejects G's samples (negative logits).
UNDECIDED = (0.2, 0.8)
REJECTED = (-0.8, -0.2)


def check_loss(loss: Loss, n: int = 8, seed: int = 0, *, traits: Iterable[str] = ()) -> None:
    """Both phases give finite scalars whose gradients reach D (D phase) and G (G phase), and only them.

    The D loss falls as real logits rise and fake logits fall, and the G loss falls as
    fake logits rise; D's gradient is the derivative of the D loss's value (so a
    penalty inside it reaches D); a penalty the ``traits`` declare on a batch
    (``penalty-on-real``, ``penalty-on-fake``) is computed on exactly that batch.
    """
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
        _check_d_direction(loss, ctx, n, seed)
        wide_real, wide_fake = real.double(), fake.double()
        check_gradient_is_derivative(
            lambda d: loss.d_loss(d(wide_real), d(wide_fake), DContext(d, wide_real, wide_fake, Targets(), 0, 0.0)),
            critic,
            "d_loss",
            seed,
        )
        real_logits, fake_logits = critic(real).detach(), critic(fake).detach()
        check_penalty_batches(
            lambda batches: loss.d_loss(real_logits, fake_logits, batches), ctx, traits, "d_loss's penalty", seed
        )
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
        _check_g_direction(loss, n, seed)


def _logits(n: int, interval: tuple[float, float], source: torch.Generator) -> Tensor:
    low, high = interval
    return (low + (high - low) * torch.rand(n, generator=source)).requires_grad_(True)


def _slopes(value: Tensor, logits: dict[str, Tensor], phase: str) -> dict[str, float]:
    """How fast ``value`` changes as each side's logits rise together; fails where no gradient reaches them."""
    grads = torch.autograd.grad(value, list(logits.values()), allow_unused=True) if value.requires_grad else None
    slopes = {}
    for i, side in enumerate(logits):
        grad = None if grads is None else grads[i]
        _check(
            grad is not None,
            f"{phase} sends no gradient to the {side} logits (are they detached?): it cannot train on {side} samples",
        )
        slopes[side] = float(grad.sum())  # type: ignore[union-attr]
    return slopes


def _check_d_direction(loss: Loss, ctx: DContext, n: int, seed: int) -> None:
    """D's loss falls as the real logits rise and as the fake logits fall, where D cannot yet tell them apart."""
    source = _seeded(seed)
    real, fake = _logits(n, UNDECIDED, source), _logits(n, UNDECIDED, source)
    slopes = _slopes(loss.d_loss(real, fake, ctx), {"real": real, "fake": fake}, "d_loss")
    rise, fall = f"(slope {slopes['real']:+.3g})", f"(slope {slopes['fake']:+.3g})"
    where = f"at logits in [{UNDECIDED[0]}, {UNDECIDED[1]}]"
    _check(
        not (slopes["real"] > 0 and slopes["fake"] < 0),
        f"d_loss rises as the real logits rise {rise} and as the fake logits fall {fall} {where}: its sign is "
        "flipped; D's loss must fall as real logits rise and fake logits fall",
    )
    _check(
        slopes["real"] < 0,
        f"d_loss does not fall as the real logits rise {rise} {where}; D's loss must fall as real logits rise",
    )
    _check(
        slopes["fake"] > 0,
        f"d_loss does not fall as the fake logits fall {fall} {where}; D's loss must fall as fake logits fall",
    )


def _check_g_direction(loss: Loss, n: int, seed: int) -> None:
    """G's loss falls as the fake logits rise, where D rejects G's samples."""
    source = _seeded(seed)
    real, fake = _logits(n, UNDECIDED, source).detach(), _logits(n, REJECTED, source)
    ctx = GContext(real_logits=lambda: real, targets=Targets(), step=0, progress=0.0)
    slope = _slopes(loss.g_loss(fake, ctx), {"fake": fake}, "g_loss")["fake"]
    _check(
        slope < 0,
        f"g_loss does not fall as the fake logits rise (slope {slope:+.3g} at fake logits in "
        f"[{REJECTED[0]}, {REJECTED[1]}]): is its sign flipped? G's loss must fall as D scores G's samples higher",
    )
