"""``ganforge run`` and ``ganforge config show``: one set of flags, one way to a RunConfig.

The run flags are generated from :class:`~ganforge_core.config.RunConfig`'s fields: each
field's :class:`~ganforge_core.config.Flag` names the flag, its description is the help
and its default the ``[default: ...]``. :func:`takes_run_flags` grafts those flags onto a
command's own parameters and hands the command a :class:`Flags`, whose
:meth:`Flags.config` turns them into a :class:`RunConfig` (``--config`` file first,
flags over it).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic.fields import FieldInfo

from ganforge_core.commands.common import FLAGS, fail, not_main_rank, read_config_file, user_errors, warn_about_plugins
from ganforge_core.config import LENGTH, RESUME_CHANGES, Choice, Flag, RunConfig, field_flags
from ganforge_core.presets import names as preset_names

CHOICE_METAVAR = "NAME[:K=V,...]"


@dataclass(frozen=True)
class RunFlag:
    """One RunConfig field as a command-line option: its typer parameter and how its value is read."""

    field: str
    flag: Flag
    shape: Literal["list", "tuple", "one"]
    parameter: inspect.Parameter

    def given(self, value: Any) -> Any:
        """The RunConfig input for what the user typed; ``None``: not given."""
        if self.shape == "list":
            return [] if self.flag.empty is not None and value == [self.flag.empty] else (value or None)
        if self.shape == "tuple":
            return value.split(",") if value else None
        return value


def run_flag(field: str, info: FieldInfo, flag: Flag) -> RunFlag:
    """The option for ``field``: its type, names, help and shown default, from the field alone."""
    kind = _without_none(info.annotation)
    shape, cli_type, metavar = _cli_form(kind)
    names = [f"{flag.name}/--no-{flag.name[2:]}"] if kind is bool and flag.negatable else [flag.name]
    empty = f" Give '{flag.empty}' for none." if flag.empty else ""
    # The parameter's default is None (not given, so a --config file's value stands):
    # the help states the field's default itself.
    option = typer.Option(
        *names, help=f"{info.description}{empty} [default: {_shown_default(info, flag)}]", metavar=flag.metavar or metavar
    )
    parameter = inspect.Parameter(
        field, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[cli_type | None, option]
    )
    return RunFlag(field, flag, shape, parameter)


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None``; any other annotation as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (kind,) = [t for t in typing.get_args(annotation) if t is not type(None)]
        return kind
    return annotation


def _cli_form(kind: Any) -> tuple[Literal["list", "tuple", "one"], Any, str | None]:
    """How a field of type ``kind`` is typed: its shape, the option's type and its metavar."""
    origin = typing.get_origin(kind)
    if origin is list:
        (item,) = typing.get_args(kind)
        return "list", list[str], CHOICE_METAVAR if item is Choice else None
    if origin is tuple:
        return "tuple", str, None
    if origin is Literal:  # checked by RunConfig, so a bad value gets its one-line error
        return "one", str, "[" + "|".join(typing.get_args(kind)) + "]"
    if kind is Choice:
        return "one", str, CHOICE_METAVAR
    return "one", kind if kind in (bool, int, float, Path) else str, None


def _shown_default(info: FieldInfo, flag: Flag) -> str:
    default = info.get_default(call_default_factory=True)
    if flag.derived is not None:
        return flag.derived
    if isinstance(default, bool):
        return "on" if default else "off"
    return "none" if default == [] else str(default)


RUN_FLAGS = tuple(run_flag(name, RunConfig.model_fields[name], flag) for name, flag in field_flags().items())
SOURCES = (
    inspect.Parameter(
        "config",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            Path | None, typer.Option("--config", help="A JSON or TOML file of settings; flags override it.")
        ],
    ),
    inspect.Parameter(
        "preset",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--preset",
                help=f"Start from a shipped preset ({', '.join(preset_names())}); --config and flags override it.",
            ),
        ],
    ),
)


RUN_PARAMETERS = (*(run_flag.parameter for run_flag in RUN_FLAGS), *SOURCES)


def read_flags(values: dict[str, Any]) -> Flags:
    """The :class:`Flags` of a command's run-flag arguments (``values`` by parameter name)."""
    given = {run_flag.field: run_flag.given(values[run_flag.field]) for run_flag in RUN_FLAGS}
    return Flags({k: v for k, v in given.items() if v is not None}, values["config"], values["preset"])


@dataclass(frozen=True)
class Flags:
    """The run flags a user gave: RunConfig fields (``given``) and the ``--config`` file."""

    given: dict[str, Any]
    config_file: Path | None
    preset: str | None = None

    def config(self) -> RunConfig:
        """The RunConfig these flags describe: the preset, the config file over it, then the flags."""
        from ganforge_core import presets

        from_preset = presets.load(self.preset) if self.preset else {}
        from_file = read_config_file(self.config_file) if self.config_file else {}
        return RunConfig.model_validate(layered(from_preset, from_file, self.given))


def layered(*layers: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``layers``, each over the ones before. A layer that sets the run's length
    (``steps`` or ``epochs``) replaces both: ``--epochs`` over a preset's steps is no conflict;
    both in one layer are (RunConfig refuses them)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if any(layer.get(key) is not None for key in LENGTH):
            merged = {k: v for k, v in merged.items() if k not in LENGTH}
        merged.update(layer)
    return merged


def takes_run_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command(flags: Flags, **own)`` every run flag, placed before its own options."""
    own = [p for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "flags"]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        flag_values = {p.name: kwargs.pop(p.name) for p in RUN_PARAMETERS}
        command(read_flags(flag_values), **kwargs)

    parameters = [*RUN_PARAMETERS, *own]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


@takes_run_flags
def run(
    flags: Flags,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this directory from its last checkpoint.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Train a GAN and write a run directory: config.json/.toml, metrics.jsonl, samples, losses.png, checkpoints."""
    given = flags.given
    with user_errors():
        if resume is not None:
            changed = sorted(FLAGS[k] for k in given if k not in RESUME_CHANGES)
            if flags.preset is not None:
                changed.append("--preset")
            if changed or flags.config_file is not None:
                raise fail(f"--resume continues a run as it was configured; drop {', '.join(changed) or '--config'}")
            run_config = None
        else:
            run_config = flags.config()
        warn_about_plugins()
        from ganforge_core.session import train

        result = train(run_config, resume=resume, overrides=given if resume else None, quiet=quiet)
    if not_main_rank():
        return  # rank 0 reports
    summary = "  ".join(f"{k}={v:.4g}" for k, v in result.results.items())
    typer.echo(f"done: {result.step} steps in {result.run_dir}; samples {result.samples}")
    if summary:
        typer.echo(f"results: {summary}")


@takes_run_flags
def config_show(
    flags: Flags,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the resolved configuration of a run (every default filled in) without training.

    Takes the same flags as 'ganforge run'. The output, saved to a file, is a valid
    --config. 'out' is left out unless given: a run picks runs/<time>-... when it starts;
    so is 'steps' under --epochs: a run works them out once its dataset is loaded.
    """
    with user_errors():
        from ganforge_core.config import resolve
        from ganforge_core.plugins import get_plugins
        from ganforge_core.reporting import toml_text

        warn_about_plugins()
        resolved = resolve(flags.config(), get_plugins().registry).config
    left_out = {"steps"} if resolved.epochs is not None else None
    if as_json:
        typer.echo(resolved.model_dump_json(indent=2, exclude=left_out))
    else:
        typer.echo(toml_text(resolved.model_dump(mode="json", exclude=left_out)), nl=False)
