"""docs/cli.md: the ``--help`` text of every ganforge command, generated from the typer app.

``ganforge docs cli > docs/cli.md`` regenerates it; tests/test_user_experience.py
fails when the page and the real help differ. The help is rendered at a fixed
width with colour off, and trailing spaces are stripped, so the page does not
depend on the terminal it was made in. The app is an argument: this module does
not import :mod:`ganforge_core.cli`, which imports it.

Not typer's own generator: ``typer ganforge_core.cli utils docs`` (typer 0.29) lists the hidden
``docs`` commands, drops the app's ``-h`` help alias, and writes Markdown bullets, not the --help users see.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

WIDTH = 100
HEADER = """# CLI reference

The `--help` text of every `ganforge` command. This page is generated from the
command line itself (`ganforge docs cli > docs/cli.md`) and a test fails when
it drifts; `docs/quickstart.md` shows the commands in use.
"""


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every visible command path, depth first, in the order the app lists them."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        if not getattr(sub, "hidden", False):
            yield from _commands(sub, (*path, name))


def help_text(app: typer.Typer, path: tuple[str, ...]) -> str:
    """``ganforge PATH --help`` at a fixed width, without colour or trailing spaces."""
    import typer.rich_utils
    from typer.testing import CliRunner

    env = {"COLUMNS": str(WIDTH), "TERMINAL_WIDTH": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}
    saved = (typer.rich_utils.MAX_WIDTH, typer.rich_utils.FORCE_TERMINAL)  # read from the env at import
    typer.rich_utils.MAX_WIDTH, typer.rich_utils.FORCE_TERMINAL = WIDTH, False
    try:
        result = CliRunner().invoke(app, [*path, "--help"], env=env, prog_name="ganforge", color=False)
    finally:
        typer.rich_utils.MAX_WIDTH, typer.rich_utils.FORCE_TERMINAL = saved
    if result.exit_code != 0:
        raise RuntimeError(f"ganforge {' '.join(path)} --help failed: {result.output}")
    lines = [line.rstrip() for line in result.output.splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


def cli_reference(app: typer.Typer) -> str:
    """The Markdown of docs/cli.md for ``app`` (``ganforge_core.cli.app``)."""
    import typer.main

    parts = [HEADER]
    for path in _commands(typer.main.get_command(app)):
        title = " ".join(("ganforge", *path))
        parts.append(f"\n## `{title}`\n\n```text\n$ {title} --help\n{help_text(app, path)}```\n")
    return "".join(parts)
