"""ganforge: interchangeable GAN components behind one hook contract.

Everything a plugin author or an API user needs is importable from here.
Importing this package does not import torch; :func:`train` and :func:`load_trained` do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganforge_core.components import (
    KINDS,
    Annealing,
    BuildContext,
    Dataset,
    DContext,
    GContext,
    Growing,
    Kind,
    Logger,
    Loss,
    Metric,
    NoOptions,
    Options,
    Recommendation,
    Regularizer,
    Renderer,
    ResolveContext,
    RunContext,
    Schedule,
    ScheduleOptions,
    Targets,
    anneal_shape,
    graph_safe_unless_annealed,
    run_progress,
)
from ganforge_core.config import Choice, Plan, RunConfig, resolve
from ganforge_core.errors import CheckpointError, ConfigError, ContractError, DataError, GanforgeError, TrainingDiverged
from ganforge_core.hookspecs import CONTRACT_VERSION, hookimpl, hookspec
from ganforge_core.registry import Component, Register, Registry
from ganforge_core.version import __version__

if TYPE_CHECKING:
    from ganforge_core.session import RunResult
    from ganforge_core.trained import Trained, load_trained

# name -> the module beside torch that defines it
_NEEDS_TORCH = {"RunResult": "session", "Trained": "trained", "load_trained": "trained"}


def __getattr__(name: str) -> Any:
    # The run-time types live beside torch; importing them is deferred to first use.
    if name in _NEEDS_TORCH:
        import importlib

        return getattr(importlib.import_module(f"ganforge_core.{_NEEDS_TORCH[name]}"), name)
    raise AttributeError(f"module 'ganforge_core' has no attribute '{name}'")


def get_registry() -> Registry:
    """The registry of every installed component (plugins load on first call)."""
    from ganforge_core.plugins import get_plugins

    return get_plugins().registry


def train(
    config: RunConfig | dict[str, Any] | None = None,
    *,
    resume: str | Path | None = None,
    live: bool | None = None,
    quiet: bool = False,
    **fields: Any,
) -> RunResult:
    """Train a GAN. Accepts a :class:`RunConfig`, a dict of its fields, or its fields as keywords.

    >>> train(generator="mlp", loss="wgan-gp", dataset="ring-8", steps=2000)  # doctest: +SKIP
    """
    from ganforge_core.session import train as run_training

    if resume is not None:
        return run_training(None, resume=Path(resume), overrides=fields, live=live, quiet=quiet)
    if config is None:
        config = RunConfig(**fields)
    elif isinstance(config, dict):
        config = RunConfig.model_validate({**config, **fields})
    elif fields:
        config = RunConfig.model_validate({**config.model_dump(), **fields})
    return run_training(config, live=live, quiet=quiet)


__all__ = [
    "CONTRACT_VERSION",
    "KINDS",
    "Annealing",
    "BuildContext",
    "CheckpointError",
    "Choice",
    "Component",
    "ConfigError",
    "ContractError",
    "DContext",
    "DataError",
    "Dataset",
    "GContext",
    "GanforgeError",
    "Growing",
    "Kind",
    "Loss",
    "Metric",
    "NoOptions",
    "Options",
    "Plan",
    "Recommendation",
    "Register",
    "Registry",
    "Regularizer",
    "ResolveContext",
    "RunConfig",
    "RunContext",
    "RunResult",
    "Logger",
    "Renderer",
    "Schedule",
    "ScheduleOptions",
    "Targets",
    "Trained",
    "TrainingDiverged",
    "__version__",
    "anneal_shape",
    "get_registry",
    "graph_safe_unless_annealed",
    "run_progress",
    "hookimpl",
    "hookspec",
    "load_trained",
    "resolve",
    "train",
]
