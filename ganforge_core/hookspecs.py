"""The whole ganforge hook contract.

A plugin is a module (or object) with functions decorated by
``ganforge_core.hookimpl`` whose names match the specs below. Plugins are found
through the ``ganforge`` entry-point group; ganforge's own components in
``plugins/`` are registered through that same group.

Registration hooks receive a ``register`` callback owned by the core registry,
so a duplicate name or a malformed component is reported with the plugin's name.
See :class:`ganforge_core.registry.Register` for its signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ganforge_core.registry import Register
    import typer

    from ganforge_core.components import RunContext

PROJECT = "ganforge"
# The contract's version: what a plugin written to docs/hooks.md can rely on. It rises
# with every change to a hook, a protocol or what the core passes to plugins; each change
# is listed in docs/contract-changelog.md, and a hook that is replaced keeps working and
# warns, naming its replacement (pluggy's warn_on_impl), for at least one version.
CONTRACT_VERSION = 6
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------
# Component registration: one hook per component kind
# --------------------------------------------------------------------------


@hookspec
def ganforge_register_generators(register: Register) -> None:
    """Register generators.

    The factory is called as ``factory(options, ctx)`` with a
    :class:`~ganforge_core.components.BuildContext` and returns a ``torch.nn.Module``
    with an integer attribute ``z_dim`` whose ``forward(z)`` maps latents of shape
    ``[N, z_dim]`` to samples of shape ``[N, *ctx.data_shape]``. A generator with
    the trait ``label-conditioning`` built with ``ctx.conditional`` is called as
    ``forward(z, labels)`` with integer labels of shape ``[N]``.

    :param register: callback ``register(name, factory, *, options=..., ...)``.
    """


@hookspec
def ganforge_register_discriminators(register: Register) -> None:
    """Register discriminators (critics).

    The factory is called as ``factory(options, ctx)`` and returns a
    ``torch.nn.Module`` whose ``forward(x)`` maps samples of shape
    ``[N, *ctx.d_input_shape]`` (the data shape, unless a regularizer such as
    packing reshapes D's inputs) to one logit per sample, shape ``[N]``. With the
    trait ``label-conditioning`` and ``ctx.conditional`` it is called as
    ``forward(x, labels=labels)``.

    :param register: callback ``register(name, factory, *, options=..., ...)``.
    """


@hookspec
def ganforge_register_losses(register: Register) -> None:
    """Register adversarial losses.

    The factory returns a :class:`~ganforge_core.components.Loss`. A loss may pass
    ``recommends=Recommendation(...)`` to state the optimizer settings and D steps
    per G step it was published with; they apply unless the user says otherwise.

    :param register: callback ``register(name, factory, *, options=..., ...)``.
    """


@hookspec
def ganforge_register_regularizers(register: Register) -> None:
    """Register regularizers and stabilisers.

    The factory returns a :class:`~ganforge_core.components.Regularizer`, which acts
    at named points of a step: wrapping a network, transforming D's inputs,
    adjusting targets, adding a D penalty, or observing the end of a step.

    :param register: callback ``register(name, factory, *, options=..., ...)``.
    """


@hookspec
def ganforge_register_schedulers(register: Register) -> None:
    """Register schedulers: training schedules.

    The factory returns a :class:`~ganforge_core.components.Schedule`: D steps per
    G step and learning-rate multipliers over the run (``lr_multiplier``) and, for a
    schedule of the trait ``beta2-schedule``, Adam's beta2 (``adam_beta2``; others
    keep the run's). Options models must subclass
    :class:`~ganforge_core.components.ScheduleOptions`.

    :param register: callback ``register(name, factory, *, options=..., ...)``.
    """


@hookspec
def ganforge_register_datasets(register: Register) -> None:
    """Register datasets.

    The factory returns a :class:`~ganforge_core.components.Dataset` (all samples as
    one tensor, scaled to ``[-1, 1]`` for images). Traits say what the data is:
    ``"image"`` or ``"vector"``, ``"labelled"``, ``"gaussian-mixture"``.

    :param register: callback ``register(name, factory, *, options=..., ...)``.
    """


@hookspec
def ganforge_register_metrics(register: Register) -> None:
    """Register evaluation metrics.

    The factory returns a :class:`~ganforge_core.components.Metric`. ``requires``
    names the dataset traits the metric needs; by default a run evaluates every
    metric whose requirements its dataset meets.

    :param register: callback ``register(name, factory, *, options=..., ...)``.
    """


@hookspec
def ganforge_register_loggers(register: Register) -> None:
    """Register loggers: where a run's records go besides ``metrics.jsonl`` (``--logger NAME``).

    The factory is called as ``factory(options, run)`` with the
    :class:`~ganforge_core.components.RunContext` and returns a
    :class:`~ganforge_core.components.Logger`. Pass ``needs=("package",)`` to have
    the core check, before training, that the Python packages it imports are installed.

    :param register: callback ``register(name, factory, *, options=..., ...)``.
    """


# --------------------------------------------------------------------------
# Commands: add ``ganforge`` subcommands
# --------------------------------------------------------------------------


@hookspec
def ganforge_register_commands(cli: typer.Typer) -> None:
    """Add subcommands to the ``ganforge`` command line (simonw/llm's ``register_commands``).

    Decorate functions with ``@cli.command()`` or add a group with
    ``cli.add_typer(...)``. The plugin's module is imported to list the commands,
    so keep torch imports inside the commands, and ``ganforge --help`` stays fast.
    A command whose name is taken by the core or an earlier plugin (by entry-point
    name) is not added, with a warning naming the plugin; so a plugin cannot
    replace a built-in command. A ``GanforgeError`` (``ConfigError`` for bad
    input) raised by a command is printed as one ``error:`` line with its exit
    status, as the core's commands do.

    :param cli: a typer application of this plugin's own, whose commands and groups
        join ``ganforge``'s.
    """


# --------------------------------------------------------------------------
# Run lifecycle: observe a run (loggers, monitors, sample writers)
# --------------------------------------------------------------------------


@hookspec
def ganforge_train_start(run: RunContext) -> None:
    """Called once the networks are built, before the first step (also on resume).

    :param run: the run's context: resolved config, run directory, start step.
    """


@hookspec
def ganforge_step_end(run: RunContext, step: int, stats: dict[str, float]) -> None:
    """Called every ``log_every`` steps with the averaged statistics since the last call.

    :param run: the run's context.
    :param step: the number of completed G steps.
    :param stats: named statistics, such as ``"loss/d"`` and ``"loss/g"``.
    """


@hookspec
def ganforge_checkpoint_saved(run: RunContext, step: int, path: Any) -> None:
    """Called after a checkpoint has been written atomically.

    :param run: the run's context.
    :param step: the step the checkpoint holds.
    :param path: the checkpoint's ``pathlib.Path``.
    """


@hookspec
def ganforge_train_end(run: RunContext, step: int, results: dict[str, float]) -> None:
    """Called once when training stops, normally or by a signal.

    :param run: the run's context.
    :param step: the last completed step.
    :param results: final metric values (empty if none ran).
    """
