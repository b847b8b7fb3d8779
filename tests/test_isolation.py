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
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
from ganforge_core import RunConfig, resolve
from ganforge_core.plugins import get_plugins
from ganforge_core.session import Run
from ganforge_core.testing import check_d_phase_isolated, check_g_phase_isolated
from lazy_penalties import NAME, register_into
from support import caching_registry

pytestmark = pytest.mark.properties

REGISTRY = register_into(caching_registry())
PLUGINS = get_plugins()
# Run only records its directory when built; nothing is written there by these tests.
RUN_DIR = Path(tempfile.gettempdir()) / "ganforge-isolation-never-written"

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def run_configs(draw: st.DrawFn, lazy: bool = False) -> RunConfig:
    """A valid combination (tests/strategies.py); ``lazy``: with ``counted-penalty`` at D and G intervals of 2 or 3."""
    required = []
    if lazy:
        every = {"d_every": draw(st.integers(2, 3)), "g_every": draw(st.integers(2, 3))}
        required.append({"name": NAME, "options": every})
    return draw(strategies.run_configs(REGISTRY, required=required))


def build_run(config: RunConfig) -> Run:
    return Run(resolve(config, REGISTRY), PLUGINS, RUN_DIR)


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
