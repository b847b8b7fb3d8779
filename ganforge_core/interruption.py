"""Interruptions of a run: signals turned into stop requests, and a plugin that ends the process.

A SIGINT or SIGTERM during the training loop is a request to stop after the
current step (:class:`StopRequest`); during the final samples and evaluation
it stops at once, since the last checkpoint is already written and ``--resume``
finishes them. A plugin's code (a lifecycle hook, a logger, a component) that
calls ``sys.exit`` or raises ``KeyboardInterrupt`` is no request from the user:
:func:`culprit` names whose code it was, from the exception's traceback, so the
run can stop in one line that blames it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

__all__ = ["StopRequest", "culprit", "stop_on_signals", "what_happened"]


class StopRequest:
    """The signal that asked the run to stop (None: none did). True once one arrived.

    ``at_once``: a signal raises ``KeyboardInterrupt`` where the run is instead of
    waiting for the end of the step (set for the final writes)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.at_once = False

    def __bool__(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal or signal.SIGTERM).name


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn the first SIGINT/SIGTERM into a request to stop after the current step."""
    requested = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum: int, frame: Any) -> None:
        requested.signal = signum
        signal.signal(signum, previous[signal.Signals(signum)])  # a second signal acts at once
        if requested.at_once:
            raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def what_happened(exc: BaseException) -> str:
    """``called sys.exit(4)`` or ``raised KeyboardInterrupt``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})" if exc.code is not None else "called sys.exit()"
    return f"raised {type(exc).__name__}"


def culprit(
    exc: BaseException, plugins: Any, owners: dict[int, str], modules: dict[str, dict[str, tuple[str, str]]]
) -> str:
    """Whose code raised ``exc``: the innermost frame of its traceback that is a plugin's.

    In that order, a frame is a lifecycle hook's implementation (``plugin 'p':
    ganforge_step_end``), a method of one of the run's objects (``owners``: id of a
    built component or logger -> its label), or a function in a module that
    provides components (``modules``: module name -> {label: (kind, plugin)}).
    """
    hooks = _hook_codes(plugins)
    vague = None  # a plugin, when no frame names its component (a helper function its components share)
    for frame in reversed(_frames(exc.__traceback__)):
        code = frame.f_code
        if code in hooks:
            return hooks[code]
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in owners:
            return owners[id(owner)]
        provided = modules.get(frame.f_globals.get("__name__", ""), {})
        named = _by_module(provided, owner)
        if named:
            return named
        plugins_there = {plugin for _, plugin in provided.values()}
        if vague is None and len(plugins_there) == 1:
            vague = f"plugin '{plugins_there.pop()}'"
    return vague or "a plugin or component of this run"


def _by_module(provided: dict[str, tuple[str, str]], owner: object) -> str | None:
    """The component whose module a frame runs in (``provided``: label -> (kind, plugin)):
    the only one there, else the only one of the kind ``owner`` is an instance of."""
    from ganforge_core import components
    from ganforge_core.kinds import BY_NAME

    if len(provided) == 1:
        return next(iter(provided))
    kinds = {kind for kind, _ in provided.values()}
    for kind in kinds:
        base = getattr(components, BY_NAME[kind].builds, None)
        of_kind = [label for label, (k, _) in provided.items() if k == kind]
        if isinstance(base, type) and isinstance(owner, base) and len(of_kind) == 1:
            return of_kind[0]
    return None


def _frames(tb: TracebackType | None) -> list[Any]:
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _hook_codes(plugins: Any) -> dict[Any, str]:
    """The code object of every hook implementation, with ``plugin 'p': HOOK``."""
    codes: dict[Any, str] = {}
    for name in dir(plugins.manager.hook):
        caller = getattr(plugins.manager.hook, name)
        if name.startswith("_") or not hasattr(caller, "get_hookimpls"):
            continue
        for impl in caller.get_hookimpls():
            code = getattr(impl.function, "__code__", None)
            if code is not None:
                codes[code] = f"plugin '{impl.plugin_name}': {name}"
    return codes


def run_owners(
    run: Any, loggers: list[tuple[str, Any]]
) -> tuple[dict[int, str], dict[str, dict[str, tuple[str, str]]]]:
    """What :func:`culprit` needs of a run: its built objects and its components' modules."""
    plan = run.plan
    label = {c.component.kind: _label(c) for c in (plan.generator, plan.discriminator, plan.loss, plan.scheduler)}
    owners: dict[int, str] = {}
    for kind, network in (("generator", run.generator), ("discriminator", run.discriminator)):
        owners.update({id(module): label[kind] for module in network.modules()})
    owners[id(run.engine.loss)] = label["loss"]
    owners[id(run.engine.schedule)] = label["scheduler"]
    for chosen in plan.regularizers:
        owners[id(run.regularizers[chosen.component.name])] = _label(chosen)
    owners.update({id(logger): name for name, logger in loggers})
    modules: dict[str, dict[str, tuple[str, str]]] = {}
    for chosen in (*plan.chosen, *plan.metrics, *plan.loggers):
        module = getattr(chosen.component.factory, "__module__", None)
        if module:
            modules.setdefault(module, {})[_label(chosen)] = (chosen.component.kind, chosen.component.plugin)
    return owners, modules


def _label(chosen: Any) -> str:
    return f"plugin '{chosen.component.plugin}': {chosen.component.label}"
