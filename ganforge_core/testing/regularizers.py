"""The check of a regularizer: every point where it acts, its penalties, its state."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ganforge_core.components import DContext, GContext, Regularizer, Targets
from ganforge_core.testing.gradients import check_gradient_is_derivative, check_penalty_batches
from ganforge_core.testing.objects import TinyCritic, TinyGenerator, _check, _finite


def check_regularizer(regularizer: Regularizer, real: Tensor, seed: int = 0, *, traits: Iterable[str] = ()) -> None:
    """Every hook point of a regularizer on a batch ``real`` of at least two samples: shapes, targets, penalty,
    observed logits and statistics, state.

    A D penalty must reach D's parameters (its gradient is the derivative of its
    value) and, where ``traits`` declare its batch (``penalty-on-real``,
    ``penalty-on-fake``), be computed on exactly that batch.
    """
    _check(
        isinstance(regularizer, Regularizer),
        f"a regularizer subclasses ganforge_core.Regularizer, got {type(regularizer).__name__}",
    )
    shape = tuple(real.shape[1:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        d_shape = tuple(regularizer.d_input_shape(shape))
        _check(
            math.prod(d_shape) % math.prod(shape) == 0,
            f"d_input_shape({shape}) = {d_shape} does not hold whole samples",
        )
        critic = regularizer.wrap_discriminator(TinyCritic(math.prod(d_shape)))
        generator = regularizer.wrap_generator(TinyGenerator(shape))
        _check(isinstance(critic, nn.Module), "wrap_discriminator must return a torch.nn.Module")
        _check(isinstance(generator, nn.Module), "wrap_generator must return a torch.nn.Module")
        fake = generator(torch.randn(len(real), 3)).detach()
        for progress in (0.0, 0.5, 1.0):
            seen = regularizer.transform_d_input(real, progress)
            _check(
                tuple(seen.shape[1:]) == d_shape,
                f"transform_d_input gave samples of shape {tuple(seen.shape[1:])}; d_input_shape says {d_shape}",
            )
            _check(seen.numel() == real.numel(), "transform_d_input lost or gained samples")
        seen_real, seen_fake = regularizer.transform_d_input(real, 0.0), regularizer.transform_d_input(fake, 0.0)
        _check(list(critic(seen_real).shape) == [seen_real.shape[0]], "the wrapped critic gives no logit per sample")
        targets = regularizer.adjust_targets(Targets())
        _check(
            isinstance(targets, Targets) and 0.0 <= targets.fake < targets.real <= 1.0,
            f"adjust_targets must keep 0 <= fake < real <= 1, got {targets!r}",
        )
        for attribute in ("d_penalty_every", "g_penalty_every"):
            every = getattr(regularizer, attribute)
            _check(
                isinstance(every, int) and not isinstance(every, bool) and every >= 1,
                f"{attribute} must be an int of at least 1, got {every!r}",
            )
        d_ctx = DContext(critic, seen_real, seen_fake, targets, step=0, progress=0.0)
        penalty = regularizer.d_penalty(d_ctx)
        if penalty is not None:
            _check_d_penalty(regularizer, penalty, d_ctx, traits, seed)
        _check_g_penalty(regularizer, critic, generator, seen_real, targets)
        regularizer.after_d_step(critic)
        with torch.no_grad():
            regularizer.observe_d_logits(critic(seen_real), critic(seen_fake))
        _check_extra_stats(regularizer.extra_stats())
        regularizer.after_g_step(generator, 1)
        sampler = regularizer.sampling_generator()
        if sampler is not None:
            with torch.no_grad():
                z = torch.randn(4, 3)
                _check(sampler(z).shape == generator(z).shape, "sampling_generator() samples differ in shape from G's")
        state = regularizer.state_dict()
        _check(isinstance(state, dict), "state_dict() must return a dict")
        regularizer.load_state_dict(state)


def _check_extra_stats(stats: object) -> None:
    """``extra_stats()``: a dict of names to detached scalar floating tensors (logged as ``NAME/key``)."""
    _check(isinstance(stats, dict), f"extra_stats() must return a dict, got {stats!r}")
    assert isinstance(stats, dict)
    for key, value in stats.items():
        _check(
            isinstance(key, str) and "/" not in key,
            f"extra_stats() keys are plain names (logged as NAME/key), got {key!r}",
        )
        _check(
            isinstance(value, Tensor) and value.dim() == 0 and value.is_floating_point() and not value.requires_grad,
            f"extra_stats()[{key!r}] must be a detached scalar (0-dim) floating tensor, got {value!r}",
        )


def _check_d_penalty(
    regularizer: Regularizer, penalty: Tensor, ctx: DContext, traits: Iterable[str], seed: int
) -> None:
    """``d_penalty`` in a D phase's context: a finite scalar that trains D, computed on the batches declared."""
    _check(
        isinstance(penalty, Tensor) and penalty.dim() == 0 and _finite(penalty),
        f"d_penalty must return None or a finite scalar tensor, got {penalty!r}",
    )
    _check(
        penalty.requires_grad,
        "d_penalty has no graph back to D's parameters, so it cannot train D: compute D's input gradient with "
        "torch.autograd.grad(..., create_graph=True)",
    )
    real, fake = ctx.real.double(), ctx.fake.double()

    def wide_penalty(critic: nn.Module) -> Tensor:
        value = regularizer.d_penalty(DContext(critic, real, fake, ctx.targets, ctx.step, ctx.progress))
        return torch.zeros((), dtype=torch.float64) if value is None else value

    check_gradient_is_derivative(wide_penalty, ctx.discriminator, "d_penalty", seed)  # type: ignore[arg-type]
    check_penalty_batches(regularizer.d_penalty, ctx, traits, "d_penalty", seed)


def _check_g_penalty(
    regularizer: Regularizer, critic: nn.Module, generator: nn.Module, seen_real: Tensor, targets: Targets
) -> None:
    """``g_penalty`` in a G phase's context: None, or a finite scalar whose gradient reaches G and not D."""
    latents = torch.randn(len(seen_real), 3)
    fake = generator(latents)
    critic.requires_grad_(False)  # as in ganforge's G phases
    try:
        ctx = GContext(
            real_logits=lambda: critic(seen_real),
            targets=targets,
            step=0,
            progress=0.0,
            generator=generator,
            latents=latents,
            fake=fake,
        )
        penalty = regularizer.g_penalty(ctx)
        if penalty is None:
            return
        _check(
            isinstance(penalty, Tensor) and penalty.dim() == 0 and _finite(penalty),
            f"g_penalty must return None or a finite scalar tensor, got {penalty!r}",
        )
        _check(penalty.requires_grad, "g_penalty has no graph back to G (was something detached?)")
        generator.zero_grad(set_to_none=True)
        penalty.backward()
    finally:
        critic.requires_grad_(True)
    g_grads = [p.grad for p in generator.parameters()]
    _check(any(g is not None for g in g_grads), "g_penalty: no gradient reaches G")
    _check(all(g is None or _finite(g) for g in g_grads), "g_penalty: G has a non-finite gradient")
    _check(all(p.grad is None for p in critic.parameters()), "g_penalty wrote D's gradients")
