"""Gradient isolation between the phases (D main, D reg, G main, G reg), for any valid combination.

Runs are built exactly as ganforge builds them (``session.Run``: dataset,
networks, regularizer wraps, optimizers, engine) from any combination of
registered generator, discriminator, loss, regularizers and dataset that
``resolve`` accepts, with any batch size and seed. The checks are the public
``ganforge_core.testing`` functions that plugin authors call on their own combinations;
they check each lazy interval's reg phase too. The test-local ``counted-penalty``
(tests/lazy_penalties.py: a D penalty on real and fake logits, a G penalty that also
runs D) is among the regularizers drawn, with intervals of 1 to 3, as is r1's ``every``.
"""

from __future__ import annotations

import tempfile
import typing
from pathlib import Path
from typing import Any, Literal

import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ganforge_core import ConfigError, RunConfig, resolve
from ganforge_core.plugins import get_plugins
from ganforge_core.session import Run
from ganforge_core.testing import check_d_phase_isolated, check_g_phase_isolated
from lazy_penalties import NAME, register_into
from support import caching_registry, default_traits, small_options

REGISTRY = register_into(caching_registry())
PLUGINS = get_plugins()
# Run only records its directory when built; nothing is written there by these tests.
RUN_DIR = Path(tempfile.gettempdir()) / "ganforge-isolation-never-written"

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def option_strategy(kind: str, name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Small options, with every bool and Literal option drawn from its values."""
    component = REGISTRY.get(kind, name)
    base = small_options(component)
    drawn: dict[str, st.SearchStrategy[Any]] = {}
    for field, info in component.options.model_fields.items():
        if info.annotation is bool:
            drawn[field] = st.booleans()
        elif typing.get_origin(info.annotation) is Literal:
            drawn[field] = st.sampled_from(typing.get_args(info.annotation))
        elif kind == "regularizer" and field.endswith("every"):  # lazy penalty intervals
            drawn[field] = st.integers(1, 3)
    return st.fixed_dictionaries(drawn).map(lambda extra: {**base, **extra})


def component_choice(kind: str, name: str) -> st.SearchStrategy[dict[str, Any]]:
    return option_strategy(kind, name).map(lambda options: {"name": name, "options": options})


def supported(kind: str, data_traits: frozenset[str]) -> list[str]:
    return [c.name for c in REGISTRY.all(kind) if c.requires <= data_traits]


@st.composite
def run_configs(draw: st.DrawFn, lazy: bool = False) -> RunConfig:
    """A valid combination; ``lazy``: with ``counted-penalty`` at D and G intervals of 2 or 3."""
    dataset = draw(st.sampled_from(REGISTRY.names("dataset")))
    traits = default_traits(REGISTRY.get("dataset", dataset))
    generator = draw(st.sampled_from(supported("generator", traits)))
    # Always named, so it gets small options (the namesake default is full size and slow).
    discriminator = draw(st.sampled_from(supported("discriminator", traits)))
    regularizers = draw(st.lists(st.sampled_from(REGISTRY.names("regularizer")), unique=True, max_size=3))
    chosen = [draw(component_choice("regularizer", r)) for r in regularizers if not (lazy and r == NAME)]
    if lazy:
        every = {"d_every": draw(st.integers(2, 3)), "g_every": draw(st.integers(2, 3))}
        chosen.append({"name": NAME, "options": every})
    return RunConfig(
        dataset={"name": dataset, "options": small_options(REGISTRY.get("dataset", dataset))},
        generator=draw(component_choice("generator", generator)),
        discriminator=draw(component_choice("discriminator", discriminator)),
        loss=draw(st.sampled_from(REGISTRY.names("loss")).flatmap(lambda n: component_choice("loss", n))),
        regularizers=chosen,
        # resolve refuses a batch of one for BatchNorm networks (assume() skips those).
        batch_size=draw(st.integers(1, 12)),
        conditional=draw(st.booleans()) if "labelled" in traits else False,
        seed=draw(st.integers(0, 2**31 - 1)),
        steps=8,
        device="cpu",
    )


def build_run(config: RunConfig) -> Run:
    try:
        plan = resolve(config, REGISTRY)
    except ConfigError:
        assume(False)
    return Run(plan, PLUGINS, RUN_DIR)


def next_batch(run: Run) -> tuple[torch.Tensor, dict[str, Any]]:
    """A real batch and, in conditional runs, its labels as the phases take them."""
    batch = run.engine.batches.draw()
    return batch.samples, ({} if batch.labels is None else {"labels": batch.labels})


def warm_up(run: Run, g_steps: int) -> None:
    """Full engine steps first, so grads and optimizer states are not trivially empty."""
    for step in range(g_steps):
        run.engine.step(step)


@SETTINGS
@given(config=run_configs(), warmup=st.integers(0, 1), step=st.integers(0, 7))
def test_d_phase_leaves_generator_untouched_and_trains_discriminator(config, warmup, step) -> None:
    run = build_run(config)
    warm_up(run, warmup)
    if not warmup:
        assert all(p.grad is None for p in run.generator.parameters())
    check_d_phase_isolated(run, step)


@SETTINGS
@given(config=run_configs(), warmup=st.integers(0, 1), step=st.integers(0, 7))
def test_g_phase_leaves_discriminator_untouched_and_trains_generator(config, warmup, step) -> None:
    run = build_run(config)
    warm_up(run, warmup)
    check_g_phase_isolated(run, step)


@SETTINGS
@given(config=run_configs(lazy=True), warmup=st.integers(0, 1), step=st.integers(0, 7))
def test_the_reg_phases_of_lazy_penalties_are_isolated_too(config, warmup, step) -> None:
    run = build_run(config)
    warm_up(run, warmup)
    penalty = run.regularizers[NAME]
    calls = len(penalty.d_calls), len(penalty.g_calls)  # type: ignore[attr-defined]
    check_d_phase_isolated(run, step)
    check_g_phase_isolated(run, step)
    # The checks ran each reg phase once (D main and G main leave lazy penalties alone).
    assert (len(penalty.d_calls), len(penalty.g_calls)) == (calls[0] + 1, calls[1] + 1)  # type: ignore[attr-defined]


@SETTINGS
@given(config=run_configs(), step=st.integers(0, 7))
def test_g_phase_restores_requires_grad_even_when_the_loss_raises(config, step) -> None:
    run = build_run(config)
    engine = run.engine

    def broken(*args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError("loss failed")

    engine.loss.g_loss = broken  # type: ignore[method-assign]
    try:
        real, labels = next_batch(run)
        engine.g_phase(real, step, **labels)
    except RuntimeError as exc:
        assert "loss failed" in str(exc)
    else:
        raise AssertionError("the G loss was not called")
    assert all(p.requires_grad for p in run.discriminator.parameters())
