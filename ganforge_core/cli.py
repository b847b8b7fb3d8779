"""The ``ganforge`` command line. Torch is imported only inside commands that train.

This module assembles the app from :mod:`ganforge_core.commands` and owns
:func:`main`, the console-script entry point (``ganforge_core.cli:main``).
"""

from __future__ import annotations

import sys

import typer

from ganforge_core import bench as _bench
from ganforge_core.commands import export as _export
from ganforge_core.commands import inspection as _inspection
from ganforge_core.commands import training as _training
from ganforge_core.commands.common import COMPONENT_HELP, FLAGS

__all__ = ["COMPONENT_HELP", "FLAGS", "app", "main"]

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
app.command("bench")(_bench.command)
docs_app = typer.Typer(name="docs", help="Generate documentation pages.", hidden=True, no_args_is_help=True)
app.add_typer(docs_app)


@docs_app.command("cli")
def docs_cli() -> None:
    """Print docs/cli.md: the --help of every command (ganforge docs cli > docs/cli.md)."""
    from ganforge_core.clidocs import cli_reference

    typer.echo(cli_reference(app), nl=False)


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
        from ganforge_core.commands.common import one_line

        typer.echo(f"error: {one_line(exc.format_message())} (see '{command} --help')", err=True)
        code = exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
