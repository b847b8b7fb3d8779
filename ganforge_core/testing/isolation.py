"""Gradient isolation: each D phase leaves G untouched, each G phase leaves D untouched."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ganforge_core.config import RunConfig
from ganforge_core.testing.objects import _check, _plugins
from ganforge_core.testing.runs import _RUN_DEFAULTS, _config, _small_config, assert_identical, build_run

if TYPE_CHECKING:
    from ganforge_core.plugins import Plugins
    from ganforge_core.run import Run


def _parameters(module: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _gradients(module: nn.Module) -> dict[str, Tensor | None]:
    return {name: None if p.grad is None else p.grad.clone() for name, p in module.named_parameters()}


def _next_batch(run: Run) -> tuple[Tensor, dict[str, Any]]:
    """A real batch and, in conditional runs, its labels as the phases take them."""
    batch = run.engine.batches.draw()
    return batch.samples, ({} if batch.labels is None else {"labels": batch.labels})


def _adam_steps(optimizer: torch.optim.Optimizer) -> int:
    steps = {int(s["step"]) for s in optimizer.state_dict()["state"].values()}
    _check(len(steps) <= 1, f"parameters of one optimizer at different steps: {steps}")
    return steps.pop() if steps else 0


def _lazy_phases(run: Run, network: str) -> list[tuple[str, Callable[..., dict[str, Tensor]]]]:
    """The run's reg phases of ``network`` ("D" or "G"), one per lazy interval."""
    engine = run.engine
    phase, intervals = (
        (engine.d_reg_phase, engine.d_intervals) if network == "D" else (engine.g_reg_phase, engine.g_intervals)
    )
    return [(f"{network} reg phase (every {k})", functools.partial(phase, interval=k)) for k in intervals]


def check_d_phase_isolated(run: Run, step: int = 0) -> None:
    """Each D phase of ``run`` (D main, then D reg for each lazy interval) trains D and leaves
    G's weights, gradients and optimizer state bit-identical."""
    for where, phase in [("D phase", run.engine.d_phase), *_lazy_phases(run, "D")]:
        _check_d_isolated(run, step, where, phase, main=where == "D phase")


def _check_d_isolated(
    run: Run, step: int, where: str, phase: Callable[..., dict[str, Tensor]], *, main: bool
) -> None:
    engine = run.engine
    g_params, g_grads = _parameters(run.generator), _gradients(run.generator)
    opt_g = copy.deepcopy(engine.opt_g.state_dict())
    d_params, opt_d_steps = _parameters(run.discriminator), _adam_steps(engine.opt_d)
    real, labels = _next_batch(run)
    stats = phase(real, step, **labels)

    assert_identical(g_params, _parameters(run.generator), f"{where}: G parameters")
    assert_identical(g_grads, _gradients(run.generator), f"{where}: G grads")
    assert_identical(opt_g, engine.opt_g.state_dict(), f"{where}: G optimizer state")
    if not main and not stats:
        return  # every penalty of this interval returned None: no update
    d_grads = _gradients(run.discriminator)
    trainable = {n for n, p in run.discriminator.named_parameters() if p.requires_grad}
    _check(trainable, "D has no trainable parameters")
    missing = [n for n in trainable if d_grads[n] is None]
    _check(not missing, f"{where}: D parameters without a gradient: {missing}")
    _check(_adam_steps(engine.opt_d) == opt_d_steps + 1, f"{where}: D's optimizer did not step exactly once")
    after = _parameters(run.discriminator)
    if _any_nonzero(d_grads, trainable):
        _check(any(not torch.equal(d_params[n], after[n]) for n in trainable), f"{where}: no D parameter moved")


def check_g_phase_isolated(run: Run, step: int = 0) -> None:
    """A D phase, then each G phase (G main, then G reg for each lazy interval): each trains G
    (one optimizer step) and leaves D bit-identical and trainable."""
    for where, phase in [("G phase", run.engine.g_phase), *_lazy_phases(run, "G")]:
        _check_g_isolated(run, step, where, phase, main=where == "G phase")


def _check_g_isolated(
    run: Run, step: int, where: str, phase: Callable[..., dict[str, Tensor]], *, main: bool
) -> None:
    engine = run.engine
    real, labels = _next_batch(run)
    engine.d_phase(real, step, **labels)  # D now has gradients and optimizer state to protect
    d_params, d_grads = _parameters(run.discriminator), _gradients(run.discriminator)
    _check(any(g is not None for g in d_grads.values()), "the D phase left D without gradients")
    opt_d = copy.deepcopy(engine.opt_d.state_dict())
    opt_g_steps = _adam_steps(engine.opt_g)
    g_params = _parameters(run.generator)
    requires_grad = {n: p.requires_grad for n, p in run.discriminator.named_parameters()}

    stats = phase(real, step, **labels)

    assert_identical(d_params, _parameters(run.discriminator), f"{where}: D parameters")
    assert_identical(d_grads, _gradients(run.discriminator), f"{where}: D grads")
    assert_identical(opt_d, engine.opt_d.state_dict(), f"{where}: D optimizer state")
    _check(
        {n: p.requires_grad for n, p in run.discriminator.named_parameters()} == requires_grad,
        f"{where}: D's requires_grad flags were not restored",
    )
    _check(all(requires_grad.values()), f"D parameters left frozen after the {where}")
    if not main and not stats:
        return  # every penalty of this interval returned None: no update
    g_trainable = [n for n, p in run.generator.named_parameters() if p.requires_grad]
    g_grads = _gradients(run.generator)
    missing = [n for n in g_trainable if g_grads[n] is None]
    _check(not missing, f"{where}: G parameters without a gradient: {missing}")
    _check(_adam_steps(engine.opt_g) == opt_g_steps + 1, f"{where}: G's optimizer did not step exactly once")
    after = _parameters(run.generator)
    if _any_nonzero(g_grads, g_trainable):
        _check(any(not torch.equal(g_params[n], after[n]) for n in g_trainable), f"{where}: no G parameter moved")


def _any_nonzero(grads: Mapping[str, Tensor | None], names: Iterable[str]) -> bool:
    """Whether any gradient is non-zero. A tiny random D can be flat around a batch (every unit
    of a layer inactive for it): G then gets exact zeros, and an Adam step on zeros moves nothing."""
    return any(grads[n] is not None and bool(grads[n].ne(0).any()) for n in names)  # type: ignore[union-attr]



def check_isolation(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    warmup: int = 1,
    small: bool = True,
    plugins: Plugins | None = None,
    **fields: Any,
) -> None:
    """Gradient isolation for a combination of components, given as a RunConfig, a dict or keywords.

    ``check_isolation(generator="resmlp", discriminator="mlp", loss="rsgan", dataset="ring-8",
    regularizers=["r1"])`` builds the run as ganforge would (on CPU, with small
    options unless ``small=False``), trains ``warmup`` full steps so gradients and
    optimizer states are not empty, then checks each D phase and each G phase (the
    reg phases of lazy penalties included).
    """
    plugins = _plugins(plugins)
    run_config = _config(config, fields, _RUN_DEFAULTS)
    if small:
        run_config = _small_config(run_config, plugins.registry)
    for check in (check_d_phase_isolated, check_g_phase_isolated):
        run = build_run(run_config, plugins=plugins)
        for step in range(warmup):
            run.engine.step(step)
        check(run, warmup)
