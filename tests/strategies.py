"""Hypothesis strategies that draw valid runs directly, from the registry and its declared rules.

A run is built choice by choice, each drawn only from what fits the choices before
it, so (almost) nothing is drawn that ``resolve`` then refuses: the dataset first;
the loss; the regularizers one at a time; the generator and the discriminator last
(dcgan's ``norm=auto`` reads the penalties' traits). For every component, the
option values drawn are the small ones (tests/support.py) with each of its
finite-valued options (bools, Literals, a regularizer's lazy ``...every``
interval, 1 to 3) enumerated; a candidate is one of those option sets that
validates in the resolve context so far and whose traits and ``conflicts`` fit
every chosen component both ways (the rules of ``config._check_combination``:
``requires``, ``conflicts`` including ``conditional``, ``label-conditioning``
for ``--conditional``, BatchNorm needing a batch of 2). A new plugin's component
is drawn as soon as it is registered, under the rules it declares.
"""

from __future__ import annotations

import functools
import itertools
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

from ganforge_core import ConfigError, Registry, ResolveContext, RunConfig
from ganforge_core.components import Recommendation
from ganforge_core.registry import Component
from support import small_options

EVERY = (1, 2, 3)  # lazy penalty intervals drawn for a regularizer's "...every" option
MAX_OPTION_SETS = 64  # option sets enumerated per component at most (the first ones, in field order)
BATCHNORM = {"batchnorm-in-g", "batchnorm-in-d"}


@dataclass(frozen=True)
class Pick:
    """A component with options that validated, and the traits they give it."""

    component: Component
    options: dict[str, Any]
    traits: frozenset[str]

    def choice(self) -> dict[str, Any]:
        return {"name": self.component.name, "options": self.options}


def _finite_values(kind: str, field: str, annotation: Any) -> tuple[Any, ...] | None:
    if annotation is bool:
        return (False, True)
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    if kind == "regularizer" and field.endswith("every") and annotation is int:
        return EVERY
    return None


@functools.cache
def _option_sets(registry: Registry, kind: str, name: str) -> tuple[dict[str, Any], ...]:
    """The small options with every finite-valued option enumerated (at most MAX_OPTION_SETS)."""
    component = registry.get(kind, name)  # type: ignore[arg-type]
    base = small_options(component)
    finite = {
        field: values
        for field, info in component.options.model_fields.items()
        if (values := _finite_values(kind, field, info.annotation)) is not None
    }
    combos = itertools.islice(itertools.product(*finite.values()), MAX_OPTION_SETS)
    return tuple({**base, **dict(zip(finite, combo, strict=True))} for combo in combos)


def _fits(pick: Pick, chosen: Sequence[Pick], conditional: bool, batch_size: int) -> bool:
    """Whether ``pick`` may join ``chosen``: no declared conflict either way, conditional, BatchNorm."""
    component = pick.component
    if conditional and "conditional" in component.conflicts:
        return False
    if batch_size < 2 and pick.traits & BATCHNORM:
        return False
    for other in chosen:
        if other.component.kind == component.kind and other.component.name == component.name:
            return False  # a regularizer chosen twice
        if set(component.conflicts) & other.traits or set(other.component.conflicts) & pick.traits:
            return False
    return True


def candidates(
    registry: Registry,
    kind: str,
    context: ResolveContext,
    chosen: Sequence[Pick],
    data_traits: frozenset[str],
    *,
    conditional: bool = False,
    names: Iterable[str] | None = None,
) -> list[Pick]:
    """Every (component, option set) of ``kind`` that validates in ``context`` and fits ``chosen``."""
    found: list[Pick] = []
    for name in names if names is not None else registry.names(kind):  # type: ignore[arg-type]
        component = registry.get(kind, name)  # type: ignore[arg-type]
        if not component.requires <= data_traits:
            continue
        for options in _option_sets(registry, kind, name):
            try:
                validated = component.validate(options, context)
            except ConfigError:
                continue
            pick = Pick(component, options, component.traits(validated))
            if conditional and kind in ("generator", "discriminator") and "label-conditioning" not in pick.traits:
                continue
            if _fits(pick, chosen, conditional, context.batch_size):
                found.append(pick)
    return found


def _required(registry: Registry, choice: dict[str, Any], context: ResolveContext) -> Pick:
    component = registry.get("regularizer", choice["name"])
    options = {**small_options(component), **choice.get("options", {})}
    return Pick(component, options, component.traits(component.validate(options, context)))


def one_of(fitting: Sequence[Pick]) -> st.SearchStrategy[Pick]:
    """One of ``fitting``: a component first (each equally likely), then one of its option sets."""
    by_name: dict[str, list[Pick]] = {}
    for candidate in fitting:
        by_name.setdefault(candidate.component.name, []).append(candidate)
    return st.sampled_from(sorted(by_name)).flatmap(lambda name: st.sampled_from(by_name[name]))


@st.composite
def run_configs(
    draw: st.DrawFn,
    registry: Registry,
    *,
    regularizers: st.SearchStrategy[int] = st.integers(0, 3),
    required: Sequence[dict[str, Any]] = (),
    losses: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    d_steps: st.SearchStrategy[int] | None = None,
    batch_sizes: st.SearchStrategy[int] = st.integers(1, 12),
    steps: int = 8,
) -> RunConfig:
    """A RunConfig that ``resolve`` accepts, drawn choice by choice (see the module's docstring).

    ``required``: regularizer choices every draw includes (validated like the rest);
    ``losses``/``datasets``: the names to draw from (default: all); ``d_steps``: the
    constant schedule's D steps per G step (default: the loss's recommendation).
    """
    batch_size = draw(batch_sizes)
    dataset = draw(st.sampled_from(sorted(datasets if datasets is not None else registry.names("dataset"))))
    data_component = registry.get("dataset", dataset)
    data_options = small_options(data_component)
    data_traits = data_component.traits(data_component.validate(data_options))
    conditional = draw(st.booleans()) if "labelled" in data_traits else False
    context = ResolveContext(data_traits=data_traits, batch_size=batch_size)
    musts = [_required(registry, choice, context) for choice in required]
    loss = draw(one_of(candidates(registry, "loss", context, musts, data_traits, names=losses)))
    context = ResolveContext(
        loss.traits, data_traits, loss.component.recommends or Recommendation(), batch_size=batch_size
    )
    chosen: list[Pick] = [loss]
    for choice in required:  # validated again: options may read the loss's traits
        must = _required(registry, choice, context)
        assert _fits(must, chosen, conditional, batch_size), f"{choice} does not fit {[c.choice() for c in chosen]}"
        chosen.append(must)
    for _ in range(draw(regularizers)):
        fitting = candidates(registry, "regularizer", context, chosen, data_traits, conditional=conditional)
        if not fitting:
            break
        chosen.append(draw(one_of(fitting)))
    # resolve() moves a packing regularizer last (an augmentation must see single samples): draw them so.
    regs = sorted(chosen[1:], key=lambda r: "packing" in r.traits)
    context = ResolveContext(
        loss.traits,
        data_traits,
        context.recommendation,
        regularizer_traits=frozenset().union(*(r.traits for r in regs)),
        batch_size=batch_size,
    )
    networks = {}
    for kind in ("generator", "discriminator"):
        fitting = candidates(registry, kind, context, chosen, data_traits, conditional=conditional)
        networks[kind] = draw(one_of(fitting))
        chosen.append(networks[kind])
    schedule = {} if d_steps is None else {"d_steps": draw(d_steps)}
    return RunConfig(
        dataset={"name": dataset, "options": data_options},
        generator=networks["generator"].choice(),
        discriminator=networks["discriminator"].choice(),
        loss=loss.choice(),
        regularizers=[r.choice() for r in regs],
        scheduler={"name": "constant", "options": schedule},
        batch_size=batch_size,
        conditional=conditional,
        seed=draw(st.integers(0, 2**31 - 1)),
        steps=steps,
        device="cpu",
    )
