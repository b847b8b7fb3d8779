"""Gradient isolation between the D and G phases, for any valid combination of components.

Runs are built exactly as ganforge builds them (``session.Run``: dataset,
networks, regularizer wraps, optimizers, engine) from any combination of
registered generator, discriminator, loss, regularizers and dataset that
``resolve`` accepts, with any batch size and seed.
"""

from __future__ import annotations

import copy
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
from support import caching_registry, default_traits, small_options

REGISTRY = caching_registry()
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
    return st.fixed_dictionaries(drawn).map(lambda extra: {**base, **extra})


def component_choice(kind: str, name: str) -> st.SearchStrategy[dict[str, Any]]:
    return option_strategy(kind, name).map(lambda options: {"name": name, "options": options})


def supported(kind: str, data_traits: frozenset[str]) -> list[str]:
    return [c.name for c in REGISTRY.all(kind) if c.requires <= data_traits]


@st.composite
def run_configs(draw: st.DrawFn) -> RunConfig:
    dataset = draw(st.sampled_from(REGISTRY.names("dataset")))
    traits = default_traits(REGISTRY.get("dataset", dataset))
    generator = draw(st.sampled_from(supported("generator", traits)))
    # Always named, so it gets small options (the namesake default is full size and slow).
    discriminator = draw(st.sampled_from(supported("discriminator", traits)))
    regularizers = draw(st.lists(st.sampled_from(REGISTRY.names("regularizer")), unique=True, max_size=3))
    return RunConfig(
        dataset={"name": dataset, "options": small_options(REGISTRY.get("dataset", dataset))},
        generator=draw(component_choice("generator", generator)),
        discriminator=draw(component_choice("discriminator", discriminator)),
        loss=draw(st.sampled_from(REGISTRY.names("loss")).flatmap(lambda n: component_choice("loss", n))),
        regularizers=[draw(component_choice("regularizer", r)) for r in regularizers],
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


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def gradients(module: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {name: None if p.grad is None else p.grad.clone() for name, p in module.named_parameters()}


def assert_identical(before: Any, after: Any, where: str = "") -> None:
    """Bit-identical tensors (NaN equal to NaN) inside nested dicts, lists and tuples."""
    if isinstance(before, torch.Tensor):
        assert isinstance(after, torch.Tensor), where
        assert before.shape == after.shape and before.dtype == after.dtype, where
        torch.testing.assert_close(after, before, rtol=0, atol=0, equal_nan=True, msg=f"{where} changed")
    elif isinstance(before, dict):
        assert isinstance(after, dict) and set(before) == set(after), f"{where}: keys {set(before) ^ set(after)}"
        for key in before:
            assert_identical(before[key], after[key], f"{where}.{key}")
    elif isinstance(before, list | tuple):
        assert isinstance(after, list | tuple) and len(before) == len(after), where
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            assert_identical(b, a, f"{where}[{i}]")
    else:
        assert before == after, f"{where}: {before!r} -> {after!r}"


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
    engine = run.engine
    g_params, g_grads = parameters(run.generator), gradients(run.generator)
    opt_g = copy.deepcopy(engine.opt_g.state_dict())
    d_params = parameters(run.discriminator)
    if not warmup:
        assert all(g is None for g in g_grads.values())

    real, labels = next_batch(run)
    engine.d_phase(real, step, **labels)

    assert_identical(g_params, parameters(run.generator), "G parameters")
    assert_identical(g_grads, gradients(run.generator), "G grads")
    assert_identical(opt_g, engine.opt_g.state_dict(), "G optimizer state")
    d_grads = gradients(run.discriminator)
    trainable = {n for n, p in run.discriminator.named_parameters() if p.requires_grad}
    assert trainable, "D has no trainable parameters"
    assert [n for n in trainable if d_grads[n] is None] == [], "D parameters without a gradient"
    assert engine.opt_d.state_dict()["state"], "D's optimizer did not step"
    after = parameters(run.discriminator)
    assert any(not torch.equal(d_params[n], after[n]) for n in trainable), "no D parameter moved"


@SETTINGS
@given(config=run_configs(), warmup=st.integers(0, 1), step=st.integers(0, 7))
def test_g_phase_leaves_discriminator_untouched_and_trains_generator(config, warmup, step) -> None:
    run = build_run(config)
    warm_up(run, warmup)
    engine = run.engine
    real, labels = next_batch(run)
    engine.d_phase(real, step, **labels)  # D now has gradients and optimizer state to protect
    d_params, d_grads = parameters(run.discriminator), gradients(run.discriminator)
    assert any(g is not None for g in d_grads.values())
    opt_d = copy.deepcopy(engine.opt_d.state_dict())
    opt_g_steps = _adam_steps(engine.opt_g)
    g_params = parameters(run.generator)
    requires_grad = {n: p.requires_grad for n, p in run.discriminator.named_parameters()}

    engine.g_phase(real, step, **labels)

    assert_identical(d_params, parameters(run.discriminator), "D parameters")
    assert_identical(d_grads, gradients(run.discriminator), "D grads")
    assert_identical(opt_d, engine.opt_d.state_dict(), "D optimizer state")
    assert {n: p.requires_grad for n, p in run.discriminator.named_parameters()} == requires_grad
    assert all(requires_grad.values()), "D parameters left frozen after the G phase"
    g_trainable = [n for n, p in run.generator.named_parameters() if p.requires_grad]
    g_grads = gradients(run.generator)
    assert [n for n in g_trainable if g_grads[n] is None] == [], "G parameters without a gradient"
    assert _adam_steps(engine.opt_g) == opt_g_steps + 1, "G's optimizer did not step exactly once"
    after = parameters(run.generator)
    assert any(not torch.equal(g_params[n], after[n]) for n in g_trainable), "no G parameter moved"


def _adam_steps(optimizer: torch.optim.Optimizer) -> int:
    steps = {int(s["step"]) for s in optimizer.state_dict()["state"].values()}
    assert len(steps) <= 1, f"parameters of one optimizer at different steps: {steps}"
    return steps.pop() if steps else 0


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
