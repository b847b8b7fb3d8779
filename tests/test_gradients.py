"""Gradient values through the engine, for valid combinations drawn from the registry.

tests/test_isolation.py proves that a phase reaches only its own network; these
properties prove that what it leaves there is right. Runs are built as ``ganforge
run`` builds them (``Run``: networks, regularizer wraps, optimizers, ``Engine``)
from combinations drawn by tests/strategies.py, the test-local ``counted-penalty``
(tests/lazy_penalties.py, lazy D and G penalties) among the regularizers:

* a phase's gradient does not depend on what ``.grad`` held before it (each
  phase zeroes its network's gradients before its backward pass);
* each input-gradient penalty (wgan-gp's own, gradient-penalty, r1, r2) reaches
  D: its weight changes D's gradient, which equals ``torch.autograd.grad`` of the
  loss plus the penalty as this file computes them from the papers' formulas;
* the G phase draws latents of its own, never a D phase's;
* a whole step (``Engine.step``, as ``session`` calls it) steps D's optimizer for
  each D phase, then G's, and its result does not depend on stale gradients:
  eager, and through the captured CUDA graph where CUDA is available;
* a phase changes no buffer but BatchNorm's running statistics and spectral
  norm's power-iteration vectors of the networks it runs, and never D's running
  statistics in a G phase (docs/testing-plugins.md, "Buffers").
"""

from __future__ import annotations

import copy
import functools
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn.utils.parametrizations import _SpectralNorm  # the module that holds the vectors u and v

import strategies
from ganforge_core import DContext, RunConfig, resolve
from ganforge_core.engine import GRAPH_WARMUP
from ganforge_core.plugins import get_plugins
from ganforge_core.session import Run
from ganforge_core.testing import assert_identical
from lazy_penalties import register_into
from support import caching_registry

pytestmark = pytest.mark.properties

REGISTRY = register_into(caching_registry())
PLUGINS = get_plugins()
RUN_DIR = Path(tempfile.gettempdir()) / "ganforge-gradients-never-written"
SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VECTORS = ["grid-25", "ring-8"]  # small mlp runs, for the properties that compute gradients themselves


def build(config: RunConfig) -> Run:
    return Run(resolve(config, REGISTRY), PLUGINS, RUN_DIR)


def next_batch(run: Run) -> tuple[Tensor, dict[str, Any]]:
    batch = run.engine.batches.draw()
    return batch.samples, ({} if batch.labels is None else {"labels": batch.labels})


def gradients(module: nn.Module) -> dict[str, Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}


def parameters(module: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def garble(*modules: nn.Module, seed: int = 1) -> None:
    """Large random values in every ``.grad`` (in place where one exists: a captured graph keeps its tensors).

    From a stream of its own, so the run's random numbers are left as they were.
    """
    for module in modules:
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=torch.Generator(device=p.device).manual_seed(seed), device=p.device)
            seed += 1
            if p.grad is None:
                p.grad = 100 * noise.to(p.dtype)
            else:
                p.grad.copy_(100 * noise)


def clear(*modules: nn.Module) -> None:
    for module in modules:
        for p in module.parameters():
            p.grad = None


def phases(run: Run, network: str) -> list[tuple[str, Callable[..., dict[str, Tensor]]]]:
    """The run's phases that update ``network`` ("D" or "G"): main, then reg for each lazy interval."""
    engine = run.engine
    main, reg, intervals = (
        (engine.d_phase, engine.d_reg_phase, engine.d_intervals)
        if network == "D"
        else (engine.g_phase, engine.g_reg_phase, engine.g_intervals)
    )
    lazy = [(f"{network} reg (every {k})", lambda *a, k=k, **kw: reg(*a, interval=k, **kw)) for k in intervals]
    return [(f"{network} main", main), *lazy]


# -- stale gradients ------------------------------------------------------------


ANY_RUN = {
    "config": strategies.run_configs(REGISTRY),
    "warmup": st.integers(0, 1),
    "step": st.integers(0, 7),
    "network": st.sampled_from("DG"),
}


@SETTINGS
@given(**ANY_RUN)
def test_a_phase_leaves_the_same_gradient_whatever_grad_held_before(config, warmup, step, network) -> None:
    run = build(config)
    for s in range(warmup):
        run.engine.step(s)
    state = copy.deepcopy(run.state_dict())
    real, labels = next_batch(run)
    trained = run.discriminator if network == "D" else run.generator
    for where, phase in phases(run, network):
        left = []
        for stale in (True, False):
            run.load_state_dict(copy.deepcopy(state), RUN_DIR)  # networks, optimizers, random streams
            if stale:
                garble(run.generator, run.discriminator)
            else:
                clear(run.generator, run.discriminator)
            stats = phase(real, step, **labels)
            left.append(gradients(trained))
        if where.endswith("main") or stats:  # a reg phase whose penalties all returned None does not update
            assert_identical(left[1], left[0], f"{where}: {network}'s gradients after stale ones")


# -- penalties reach D ------------------------------------------------------------


def input_gradients(critic: nn.Module, x: Tensor) -> Tensor:
    """d critic(x) / dx per sample, differentiable in the critic's parameters."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.flatten(1)


def interpolation_penalty(critic: nn.Module, real: Tensor, fake: Tensor, one_sided: bool) -> Tensor:
    """Gulrajani et al. 2017, eq. 3: E (||grad D(x_hat)|| - 1)^2, x_hat = a real + (1 - a) fake, a ~ U[0, 1]."""
    mix = torch.rand((real.shape[0], 1), dtype=real.dtype)
    excess = input_gradients(critic, mix * real + (1 - mix) * fake).norm(dim=1) - 1
    return (excess.clamp(min=0) if one_sided else excess).square().mean()


def expected_d_gradients(
    run: Run, critic: nn.Module, real: Tensor, step: int, penalty: str, weight: float, factor: int, one_sided: bool,
    seed: int,
) -> tuple[list[Tensor], bool]:
    """D's gradient of the phase's objective, computed here: loss (in D main) + factor * weight * penalty,
    and whether the penalty on its own has a gradient (a one-sided penalty is flat below norm 1).

    Random numbers as the phase draws them: the latents, then wgan-gp's or gradient-penalty's mixing weights.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        fake = run.generator(torch.randn(real.shape[0], run.engine.z_dim))
    real_logits, fake_logits = critic(real).float(), critic(fake).float()
    if penalty == "wgan-gp":
        total = fake_logits.mean() - real_logits.mean()
    elif factor == 1:
        ctx = DContext(critic, real, fake, run.engine.targets, step, step / run.engine.total_steps)
        total = run.engine.loss.d_loss(real_logits, fake_logits, ctx)
    else:  # a lazy penalty's own phase
        total = torch.zeros(())
    if penalty in ("wgan-gp", "gradient-penalty"):
        term = weight * interpolation_penalty(critic, real, fake, one_sided)
    else:  # Mescheder et al. 2018, eq. 9 (R1, at reals) and 10 (R2, at fakes)
        term = weight / 2 * input_gradients(critic, real if penalty == "r1" else fake).square().sum(1).mean()
    # A penalty need not reach every parameter (R1 never reaches D's last bias): those get 0, as in the engine.
    grad = functools.partial(torch.autograd.grad, inputs=list(critic.parameters()), materialize_grads=True)
    own = grad(term, retain_graph=True, allow_unused=True)
    return list(grad(total + factor * term, allow_unused=True)), any(bool(g.ne(0).any()) for g in own)


@st.composite
def penalised_runs(draw: st.DrawFn) -> tuple[str, RunConfig]:
    """A small mlp run with one input-gradient penalty, not annealed, of some weight (and lazy interval)."""
    penalty = draw(st.sampled_from(["wgan-gp", "gradient-penalty", "r1", "r2"]))
    weight = draw(st.floats(0.5, 20.0))
    options: dict[str, Any] = {"anneal": "none"}
    if penalty in ("wgan-gp", "gradient-penalty"):
        options |= {"weight": weight, "penalty": draw(st.sampled_from(["two-sided", "one-sided"]))}
    else:
        options |= {"gamma": weight}
    if penalty in ("r1", "r2"):
        options["every"] = draw(st.integers(1, 3))
    if penalty == "wgan-gp":
        del options["anneal"]  # a loss's options do not anneal
        config = draw(strategies.run_configs(REGISTRY, regularizers=st.just(0), datasets=VECTORS, losses=[penalty]))
        loss = {"name": penalty, "options": options}
        return penalty, RunConfig.model_validate({**config.model_dump(), "loss": loss})
    required = [{"name": penalty, "options": options}]
    runs = strategies.run_configs(REGISTRY, regularizers=st.just(0), required=required, datasets=VECTORS)
    return penalty, draw(runs)


def penalty_weight(config: RunConfig, penalty: str, value: float | None = None) -> tuple[RunConfig, float, int, bool]:
    """``config`` with the penalty's weight set to ``value`` (if given), and its weight, interval, sidedness."""
    data = config.model_dump()
    choice = data["loss"] if penalty == "wgan-gp" else data["regularizers"][0]
    key = "gamma" if penalty in ("r1", "r2") else "weight"
    if value is not None:
        choice["options"][key] = value
    options = choice["options"]
    return RunConfig.model_validate(data), options[key], options.get("every", 1), options.get("penalty") == "one-sided"


@SETTINGS
@given(case=penalised_runs(), warmup=st.integers(0, 1), step=st.integers(0, 7), seed=st.integers(0, 2**16))
def test_each_penalty_reaches_d_with_its_weight_and_matches_autograd(case, warmup, step, seed) -> None:
    penalty, config = case
    weighted = build(config)
    for s in range(warmup):
        weighted.engine.step(s)
    state = copy.deepcopy(weighted.state_dict())
    left, reaches = [], []
    for value in (None, 0.0):  # the drawn weight, then 0 from the same state
        run_config, weight, every, one_sided = penalty_weight(config, penalty, value)
        run = weighted if value is None else build(run_config)
        run.load_state_dict(copy.deepcopy(state), RUN_DIR)
        real, _ = next_batch(run)
        critic = copy.deepcopy(run.discriminator)  # D as the phase finds it (the phase then steps it)
        torch.manual_seed(seed)
        if every == 1:
            run.engine.d_phase(real, step)
        else:
            run.engine.d_reg_phase(real, step, interval=every)
        got = [p.grad for p in run.discriminator.parameters()]
        want, reached = expected_d_gradients(run, critic, real, step, penalty, weight, every, one_sided, seed)
        for name, g, w in zip(dict(run.discriminator.named_parameters()), got, want, strict=True):
            assert g is not None, f"{penalty}: D's {name} got no gradient"
            where = f"{penalty} (weight {weight}), D's {name}"
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6, msg=lambda m, where=where: f"{where}: {m}")
        left.append(got)
        reaches.append(reached)
    moved = any(not torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(*left, strict=True))
    # A one-sided penalty below norm 1 is flat: only then may its weight leave D's gradient alone.
    drawn = penalty_weight(config, penalty)[1]
    assert moved == reaches[0], f"{penalty}: D's gradient with weight {drawn} and with 0 differ: {moved}"


# -- latents ----------------------------------------------------------------------------


def record_latents(run: Run) -> tuple[list[Tensor], list[Tensor], Any]:
    """Lists that fill with the latents G is called with: in D phases (under no_grad) and in G phases."""
    in_d: list[Tensor] = []
    in_g: list[Tensor] = []

    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        (in_g if torch.is_grad_enabled() else in_d).append(args[0].detach().clone())

    return in_d, in_g, run.generator.register_forward_pre_hook(record)


def _rows_within(rows: Tensor, drawn: Tensor) -> bool:
    """Every row of ``rows`` is a row of ``drawn``."""
    return bool((rows[:, None] == drawn[None]).flatten(2).all(dim=2).any(dim=1).all())


@SETTINGS
@given(
    config=strategies.run_configs(REGISTRY, d_steps=st.integers(1, 3)),
    warmup=st.integers(0, 1),
    step=st.integers(0, 7),
)
def test_d_and_g_phases_draw_latents_of_their_own(config, warmup, step) -> None:
    run = build(config)
    for s in range(warmup):
        run.engine.step(s)
    in_d, in_g, hook = record_latents(run)
    try:
        run.engine.step(step)
    finally:
        hook.remove()
    d_steps = run.engine.schedule.d_steps
    d_kind, g_kind = run.engine.step_kind(step)
    # A G penalty may run G again on (a share of) its own phase's latents (path length
    # differentiates G there): no new draw. Any other repeat is still a reuse, caught below.
    in_g = [z for i, z in enumerate(in_g) if not any(_rows_within(z, earlier) for earlier in in_g[:i])]
    assert len(in_d) == d_steps + sum(map(len, d_kind)), "one draw of fakes per D phase"
    assert len(in_g) == 1 + len(g_kind), "one draw of fakes per G phase"
    rows = torch.cat([*in_d, *in_g])
    assert rows.shape[0] == config.batch_size * (len(in_d) + len(in_g))
    # Gaussian draws repeat a row only when a phase reuses another's latents.
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0], "a phase reused another phase's latents"


# -- a whole step ---------------------------------------------------------------------------


def record_updates(run: Run) -> tuple[list[str], list[Any]]:
    order: list[str] = []
    hooks = [
        opt.register_step_post_hook(lambda *_, name=name: order.append(name))
        for name, opt in (("D", run.engine.opt_d), ("G", run.engine.opt_g))
    ]
    return order, hooks


def expected_updates(run: Run, step: int) -> list[str]:
    """Each D step's D main and its D reg phases, then G main and the G reg phases (engine's docstring)."""
    d_kind, g_kind = run.engine.step_kind(step)
    return [u for intervals in d_kind for u in ["D"] * (1 + len(intervals))] + ["G"] * (1 + len(g_kind))


def step_both(first: Run, second: Run, step: int) -> None:
    """``step`` on each run, both from the same random numbers (the runs share torch's streams)."""
    cuda = first.device.type == "cuda"
    state = torch.get_rng_state(), torch.cuda.get_rng_state() if cuda else None
    first.engine.step(step)  # as session.train calls it
    torch.set_rng_state(state[0])
    if cuda:
        torch.cuda.set_rng_state(state[1])
    second.engine.step(step)


@SETTINGS
@given(
    config=strategies.run_configs(REGISTRY, d_steps=st.integers(1, 3)),
    warmup=st.integers(0, 1),
    steps=st.integers(1, 2),
)
def test_a_whole_step_updates_d_then_g_and_ignores_stale_gradients_eager(config, warmup, steps) -> None:
    stale, clean = build(config), build(config)
    for s in range(warmup):
        step_both(stale, clean, s)
    for s in range(warmup, warmup + steps):
        order, hooks = record_updates(stale)
        garble(stale.generator, stale.discriminator, seed=s)
        step_both(stale, clean, s)
        for hook in hooks:
            hook.remove()
        assert order == expected_updates(stale, s)
        for network in ("generator", "discriminator"):
            assert_identical(
                parameters(getattr(clean, network)), parameters(getattr(stale, network)), f"step {s}: {network}"
            )


GRAPHED = {
    "mlp-r1-lazy": {
        "generator": "mlp:hidden=16,depth=1",
        "discriminator": "mlp:hidden=16,depth=1",
        "dataset": "ring-8:n=256",
        "regularizers": ["r1:every=2", "spectral-norm"],
        "scheduler": "constant:d_steps=2",
    },
    "dcgan-hinge": {
        "generator": "dcgan:width=4,z_dim=4",
        "discriminator": "dcgan:width=4",
        "dataset": "mnist-5k:size=16",
        "loss": "hinge",
    },
}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA-graph path needs a CUDA device")
@pytest.mark.parametrize("fields", list(GRAPHED.values()), ids=list(GRAPHED))
def test_a_whole_step_through_the_cuda_graph_matches_eager_steps_and_ignores_stale_gradients(fields) -> None:
    base = {**fields, "device": "cuda", "precision": "fp32", "batch_size": 16, "steps": 20}
    graphed = build(RunConfig.model_validate({**base, "cuda_graph": True}))
    eager = build(RunConfig.model_validate({**base, "cuda_graph": False}))
    assert graphed.fast.cuda_graph and not eager.fast.cuda_graph
    for s in range(2 * (GRAPH_WARMUP + 2)):  # every kind of step warms up, is captured, then replays
        garble(graphed.generator, graphed.discriminator, seed=s)
        step_both(graphed, eager, s)
    assert graphed.engine._graphs, "no step was captured"
    torch.cuda.synchronize()
    for network in ("generator", "discriminator"):
        for (name, a), b in zip(getattr(graphed, network).named_parameters(), getattr(eager, network).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5, msg=lambda m: f"{network}.{name}: {m}")


# -- buffers ------------------------------------------------------------------------------

RUNNING_STATISTICS = {"running_mean", "running_var", "num_batches_tracked"}
POWER_ITERATION = {"_u", "_v"}


def buffer_kinds(module: nn.Module) -> dict[str, str]:
    """Each buffer of ``module``: "running-statistics" (BatchNorm's, or those a module names in its
    ``running_statistics``), "power-iteration" (spectral norm) or "other"."""
    kinds = {}
    for owner_name, owner in module.named_modules():
        for name, _ in owner.named_buffers(recurse=False):
            full = f"{owner_name}.{name}" if owner_name else name
            if isinstance(owner, nn.modules.batchnorm._BatchNorm) and name in RUNNING_STATISTICS:
                kinds[full] = "running-statistics"
            elif name in getattr(owner, "running_statistics", ()):  # a module's own (stylegan2's w_avg)
                kinds[full] = "running-statistics"
            elif isinstance(owner, _SpectralNorm) and name in POWER_ITERATION:
                kinds[full] = "power-iteration"
            else:
                kinds[full] = "other"
    return kinds


# What each phase may change (docs/testing-plugins.md, "Buffers"): a forward pass in training mode
# moves BatchNorm's running statistics and spectral norm's vectors. The D phases run D and G (G
# makes the fakes, under no_grad); the G phases run G and a frozen D, whose statistics they leave.
FORWARD = {"running-statistics", "power-iteration"}
MAY_CHANGE = {
    "D": {"generator": FORWARD, "discriminator": FORWARD},
    "G": {"generator": FORWARD, "discriminator": {"power-iteration"}},
}


@SETTINGS
@given(**ANY_RUN)
def test_a_phase_changes_only_the_buffers_it_may(config, warmup, step, network) -> None:
    run = build(config)
    for s in range(warmup):
        run.engine.step(s)
    for where, phase in phases(run, network):
        before = {net: dict(getattr(run, net).named_buffers()) for net in ("generator", "discriminator")}
        before = {net: {n: b.clone() for n, b in buffers.items()} for net, buffers in before.items()}
        real, labels = next_batch(run)
        phase(real, step, **labels)
        for net, allowed in MAY_CHANGE[network].items():
            kinds = buffer_kinds(getattr(run, net))
            after = dict(getattr(run, net).named_buffers())
            changed = [n for n, b in before[net].items() if not torch.equal(b, after[n])]
            wrong = [f"{n} ({kinds[n]})" for n in changed if kinds[n] not in allowed]
            assert not wrong, f"{where} changed {net} buffers it must leave alone: {wrong}"
