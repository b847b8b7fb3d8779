"""A test-local regularizer with a D and a G penalty, each with its own interval, that records its calls.

``d_penalty`` is ``d_weight * (mean(D(real)^2) + mean(D(fake)^2))``: it reaches every
parameter of D, and would reach G if the phase's fakes carried G's graph.
``g_penalty`` is ``g_weight * (mean(G(z)^2) + mean(D(real)^2))``: it would reach D
if the phase did not freeze it. A weight of 0 turns the penalty off (it returns
None). Each call appends the step it saw to ``d_calls``/``g_calls``.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from ganforge_core import DContext, GContext, Options, Registry, Regularizer

NAME = "counted-penalty"


class CountedOptions(Options):
    d_every: int = Field(1, ge=1, description="interval of the D penalty")
    g_every: int = Field(1, ge=1, description="interval of the G penalty")
    d_weight: float = Field(0.5, ge=0, description="weight of the D penalty (0: none)")
    g_weight: float = Field(0.5, ge=0, description="weight of the G penalty (0: none)")


class Counted(Regularizer):
    def __init__(self, options: CountedOptions) -> None:
        self.options = options
        self.d_penalty_every, self.g_penalty_every = options.d_every, options.g_every
        self.d_calls: list[int] = []
        self.g_calls: list[int] = []

    def d_penalty(self, ctx: DContext) -> Tensor | None:
        if not self.options.d_weight:
            return None
        self.d_calls.append(ctx.step)
        on_real, on_fake = ctx.discriminator(ctx.real).float(), ctx.discriminator(ctx.fake).float()
        return self.options.d_weight * (on_real.square().mean() + on_fake.square().mean())

    def g_penalty(self, ctx: GContext) -> Tensor | None:
        if not self.options.g_weight:
            return None
        assert ctx.fake is not None and ctx.latents is not None and ctx.generator is not None
        self.g_calls.append(ctx.step)
        return self.options.g_weight * (ctx.fake.float().square().mean() + ctx.real_logits().square().mean())


def register_into(registry: Registry) -> Registry:
    """Add ``counted-penalty`` to ``registry`` (as plugin ``test-phases``); returns it."""
    registry.registrar("regularizer", "test-phases")(
        NAME,
        lambda options, ctx: Counted(options),
        options=CountedOptions,
        summary="test: a D and a G penalty with their own intervals",
        traits={"graph-safe"},
    )
    assert not registry.problems, registry.problems
    return registry
