"""docs/cli.md: the ``--help`` text of every ganforge command, generated from the typer app.

``ganforge docs cli > docs/cli.md`` regenerates it; tests/test_user_experience.py
fails when the page and the real help differ. The help is rendered at a fixed
width with colour off, and trailing spaces are stripped, so the page does not
depend on the terminal it was made in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

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


def help_text(path: tuple[str, ...]) -> str:
    """``ganforge PATH --help`` at a fixed width, without colour or trailing spaces."""
    import typer.rich_utils
    from typer.testing import CliRunner

    from ganforge_core.cli import app

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


def cli_reference() -> str:
    """The Markdown of docs/cli.md."""
    import typer.main

    from ganforge_core.cli import app

    parts = [HEADER]
    for path in _commands(typer.main.get_command(app)):
        title = " ".join(("ganforge", *path))
        parts.append(f"\n## `{title}`\n\n```text\n$ {title} --help\n{help_text(path)}```\n")
    return "".join(parts)


def main() -> None:  # pragma: no cover - python -m ganforge_core.clidocs
    os.environ.setdefault("COLUMNS", str(WIDTH))
    print(cli_reference(), end="")


if __name__ == "__main__":  # pragma: no cover
    main()
