"""What a loss or a penalty gives D: a gradient that is the derivative of its value, from the batches it declares.

Both checks evaluate D's objective several times on the same random numbers and
the same D buffers (spectral norm's power iteration, say, moves them on every
forward pass), so that only what the check changes can change the value.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor, nn

from ganforge_core.components import DContext
from ganforge_core.testing.objects import _check, _seeded

# The batch an input-gradient penalty is computed on, as a component declares it.
PENALTY_BATCH_TRAITS = {"real": "penalty-on-real", "fake": "penalty-on-fake"}

# A central difference of step EPSILON along a unit direction of D's parameters. A penalty
# computed in float32 inside the plugin is exact to about 1e-7 of its value, so the
# difference is trusted to RELATIVE_FLOOR of the value (ABSOLUTE_FLOOR near zero), and the
# two slopes must agree to SLOPE_TOLERANCE.
EPSILON = 1e-3
SLOPE_TOLERANCE = 1e-3
RELATIVE_FLOOR = 1e-4
ABSOLUTE_FLOOR = 1e-9


@contextmanager
def _replayed(module: nn.Module, seed: int) -> Iterator[None]:
    """Run the body on ``seed``'s random numbers and give ``module``'s buffers back afterwards."""
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)


def check_gradient_is_derivative(
    value: Callable[[nn.Module], Tensor], critic: nn.Module, what: str, seed: int = 0
) -> None:
    """The gradient ``value(critic)`` sends D's parameters is the derivative of its value.

    Along a random direction of D's parameters (of a float64 copy of ``critic``), the
    autograd slope must match a central finite difference of the value. A term that
    changes with D but reaches it through no graph, such as a gradient penalty whose
    ``torch.autograd.grad`` lacks ``create_graph=True``, shows up as the difference.
    """
    critic = copy.deepcopy(critic).double()
    parameters = [p for p in critic.parameters() if p.requires_grad]
    source = _seeded(seed)
    direction = [torch.randn(p.shape, generator=source, dtype=p.dtype) for p in parameters]
    norm = torch.sqrt(sum((d.square().sum() for d in direction), torch.zeros((), dtype=torch.float64)))
    direction = [d / norm for d in direction]

    def evaluate() -> Tensor:
        with _replayed(critic, seed):
            return value(critic)

    out = evaluate()
    grads = torch.autograd.grad(out, parameters, allow_unused=True) if out.requires_grad else [None] * len(parameters)
    slope = float(sum(((g * d).sum() for g, d in zip(grads, direction, strict=True) if g is not None), 0.0))
    values = []
    for step in (EPSILON, -EPSILON):
        with torch.no_grad():
            for p, d in zip(parameters, direction, strict=True):
                p.add_(step * d)
        values.append(float(evaluate().detach()))
        with torch.no_grad():
            for p, d in zip(parameters, direction, strict=True):
                p.sub_(step * d)
    numeric = (values[0] - values[1]) / (2 * EPSILON)
    floor = RELATIVE_FLOOR * abs(float(out.detach())) + ABSOLUTE_FLOOR
    tolerance = SLOPE_TOLERANCE * (abs(slope) + abs(numeric)) + floor
    _check(
        abs(slope - numeric) <= tolerance,
        f"{what} changes with D's parameters at a rate of {numeric:.6g}, but the gradient it sends D gives "
        f"{slope:.6g}: part of it reaches D through no graph (was a gradient penalty's torch.autograd.grad "
        "called without create_graph=True, or something detached?)",
    )


def declared_batches(traits: Iterable[str]) -> frozenset[str]:
    """The batches (``real``, ``fake``) a component declares its input-gradient penalty computed on."""
    traits = set(traits)
    return frozenset(side for side, trait in PENALTY_BATCH_TRAITS.items() if trait in traits)


def _batches(sides: Iterable[str]) -> str:
    sides = sorted(sides)
    return {0: "neither batch", 1: f"the {''.join(sides)} batch", 2: "both batches"}[len(sides)]


def check_penalty_batches(
    penalty: Callable[[DContext], Tensor | None], ctx: DContext, traits: Iterable[str], what: str, seed: int = 0
) -> None:
    """The penalty changes with exactly the batches its traits declare (``penalty-on-real``, ``penalty-on-fake``).

    Nothing to check when they declare neither, or when the penalty changes with
    neither batch (it is zero here). Each batch of ``ctx`` is replaced by another in
    turn; ``penalty(ctx)`` is evaluated on the same random numbers and D buffers each time.
    """
    declared = declared_batches(traits)
    if not declared:
        return
    critic = ctx.discriminator
    module = critic if isinstance(critic, nn.Module) else nn.Module()

    def evaluate(batches: DContext) -> Tensor | None:
        with _replayed(module, seed):
            out = penalty(batches)
        return None if out is None else out.detach()

    base = evaluate(ctx)
    if base is None:
        return  # no penalty at this point of the run
    source = _seeded(seed + 1)
    reads = set()
    for side in ("real", "fake"):
        batch: Tensor = getattr(ctx, side)
        other = batch + 0.5 * torch.randn(batch.shape, generator=source, dtype=batch.dtype).to(batch.device)
        changed = evaluate(replace(ctx, real=other) if side == "real" else replace(ctx, fake=other))
        if changed is None or not torch.isclose(changed, base, rtol=1e-6, atol=1e-12):
            reads.add(side)
    if not reads:
        return  # flat here (zero, e.g. a one-sided penalty below its threshold): it tells no batch
    names = " and ".join(PENALTY_BATCH_TRAITS[side] for side in sorted(declared))
    _check(
        reads == declared,
        f"{what} is computed on {_batches(reads)}, but it declares {names} ({_batches(declared)})",
    )
