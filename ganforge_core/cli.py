"""The ``ganforge`` command line. Torch is imported only inside commands that train.

This module assembles the app from :mod:`ganforge_core.commands`, then adds the
commands of every loaded plugin (``ganforge_register_commands``), and owns
:func:`main`, the console-script entry point (``ganforge_core.cli:main``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import typer.main
from typer.models import CommandInfo, TyperInfo

from ganforge_core.commands import export as _export
from ganforge_core.commands import inspection as _inspection
from ganforge_core.commands import training as _training
from ganforge_core.commands.common import COMPONENT_HELP, FLAGS, fail, not_main_rank, one_line, user_errors
from ganforge_core.registry import PluginProblem

if TYPE_CHECKING:
    from ganforge_core.plugins import Plugins

__all__ = ["COMPONENT_HELP", "FLAGS", "add_plugin_commands", "app", "main"]

app = typer.Typer(
    name="ganforge",
    help="Train GANs from interchangeable, plugin-provided components.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help is plain text: "[default: ...]" in an option's help is text, not rich markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# The commands live in ganforge_core/commands/; this module assembles the app.
app.command()(_training.run)
config_app = typer.Typer(
    name="config", help="Inspect run configurations.", no_args_is_help=True, pretty_exceptions_enable=False
)
config_app.command("show")(_training.config_show)
app.add_typer(config_app)
app.command()(_inspection.plugins)
app.command()(_inspection.sample)
app.command("eval")(_inspection.evaluate)
app.command("export")(_export.export)
docs_app = typer.Typer(name="docs", help="Generate documentation pages.", hidden=True, no_args_is_help=True)
app.add_typer(docs_app)


@docs_app.command("cli")
def docs_cli() -> None:
    """Print docs/cli.md: the --help of every command (ganforge docs cli > docs/cli.md)."""
    from ganforge_core.clidocs import cli_reference

    typer.echo(cli_reference(app), nl=False)


@docs_app.command("hooks")
def docs_hooks(
    page: Path = typer.Argument(Path("docs/hooks.md"), help="The hook reference page to update."),
) -> None:
    """Rewrite the generated reference block of docs/hooks.md (kinds, protocols) from the code."""
    from ganforge_core.hookdocs import update

    try:  # a missing or unreadable page: one line naming it, like any command's error
        changed = update(page)
    except UnicodeDecodeError:
        raise fail(f"{page} is not UTF-8 text") from None
    except OSError as exc:
        raise fail(f"cannot update {page}: {exc.strerror or exc}", 1) from None
    typer.echo(f"{page}: {'updated' if changed else 'already up to date'}")


@docs_app.command("traits")
def docs_traits() -> None:
    """Print docs/traits.md: every trait, its meaning and who reads it (ganforge docs traits > docs/traits.md)."""
    from ganforge_core.traits import builtin_registry, markdown

    typer.echo(markdown(builtin_registry()), nl=False)


COMMANDS_HOOK = "ganforge_register_commands"


def _command_name(entry: CommandInfo | TyperInfo) -> str:
    """The name ``ganforge`` lists a command or group under, resolved the way typer does."""
    alone = typer.Typer()
    if isinstance(entry, CommandInfo):
        alone.registered_commands.append(entry)
    else:
        alone.registered_groups.append(entry)
    return next(iter(typer.main.get_group(alone).commands))


def _entries(cli: typer.Typer) -> list[CommandInfo | TyperInfo]:
    return [*cli.registered_commands, *cli.registered_groups]


def _one_line_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` with a ``GanforgeError`` (or invalid options, or an OSError) as one ``error:`` line."""
    if getattr(callback, "ganforge_one_line_errors", False):
        return callback

    @functools.wraps(callback)  # typer reads the wrapped function's signature
    def run(*args: Any, **kwargs: Any) -> Any:
        with user_errors():
            return callback(*args, **kwargs)

    run.ganforge_one_line_errors = True  # type: ignore[attr-defined]
    return run


def _wrap_errors(cli: typer.Typer) -> None:
    """Wrap every command callback of ``cli`` and its groups, at any depth."""
    for command in cli.registered_commands:
        if command.callback is not None:
            command.callback = _one_line_errors(command.callback)
    if cli.registered_callback is not None and callable(cli.registered_callback.callback):
        cli.registered_callback.callback = _one_line_errors(cli.registered_callback.callback)
    for group in cli.registered_groups:
        if isinstance(group.typer_instance, typer.Typer):
            _wrap_errors(group.typer_instance)


def add_plugin_commands(cli: typer.Typer, plugins: Plugins, warn: Callable[[str], None]) -> list[str]:
    """Add each plugin's commands to ``cli``; the names added, in order.

    Each plugin registers on a typer app of its own, then its commands join ``cli``
    one by one: a name the core or an earlier plugin (entry-point name order) has
    taken is not added, and ``warn`` hears of it, naming the plugin; so does a
    plugin whose hook raised, and the others still add theirs. Plugin commands
    report ``GanforgeError`` as one line, like the core's.
    """
    taken = {_command_name(entry): "ganforge" for entry in _entries(cli)}
    added: list[str] = []
    names = [name for name, _ in plugins.manager.list_name_plugin()]
    for plugin in names:
        own = typer.Typer()
        failed = False

        def report(name: str, exc: Exception) -> None:
            nonlocal failed
            failed = True
            warn(str(PluginProblem(name, f"{COMMANDS_HOOK} raised {exc!r}")))

        plugins.call_each(COMMANDS_HOOK, report, skip=[n for n in names if n != plugin], cli=own)
        for entry in [] if failed else _entries(own):  # none of a plugin whose hook raised
            try:
                name = _command_name(entry)
            except Exception as exc:  # noqa: BLE001 - a malformed command is the plugin's
                report(plugin, exc)
                continue
            if name in taken:
                owner = "ganforge" if taken[name] == "ganforge" else f"plugin '{taken[name]}'"
                warn(str(PluginProblem(plugin, f"command '{name}' is taken by {owner}; not added")))
                continue
            taken[name] = plugin
            added.append(name)
            if isinstance(entry, CommandInfo):
                if entry.callback is not None:
                    entry.callback = _one_line_errors(entry.callback)
                cli.registered_commands.append(entry)
            else:
                _wrap_errors(entry.typer_instance)
                cli.registered_groups.append(entry)
    return added


def _warn(message: str) -> None:
    if not not_main_rank():  # rank 0 warns
        typer.echo(f"warning: {one_line(message)}", err=True)


def _load_plugin_commands() -> None:
    from ganforge_core.plugins import get_plugins

    add_plugin_commands(app, get_plugins(), _warn)


_load_plugin_commands()


def main() -> None:
    """Entry point: usage errors become one line, like every other error."""
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        # Click's exceptions (typer may vendor click) share this interface.
        if not (callable(getattr(exc, "format_message", None)) and hasattr(exc, "exit_code")):
            raise
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(0)
        command = ctx.command_path if ctx is not None else "ganforge"
        typer.echo(f"error: {one_line(exc.format_message())} (see '{command} --help')", err=True)
        code = exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        code = 130
    code = code if isinstance(code, int) else 0
    distributed = sys.modules.get("ganforge_core.distributed")  # imported only by commands that train
    if distributed is not None:
        distributed.end_process(code)  # a torchrun worker: no interpreter finalization (see distributed.stop)
    sys.exit(code)
