"""What every command shares: flag names, one-line errors and config files."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from ganforge_core.config import field_flags
from ganforge_core.errors import GanforgeError, quote, shorten

# RunConfig field -> the flag that sets it, so validation errors name the flag the user typed.
FLAGS = {name: flag.name for name, flag in field_flags().items()}
COMPONENT_HELP = "NAME or NAME:key=value,... (see 'ganforge plugins')"
SOURCE_HELP = (
    "A run directory (its newest checkpoint that loads and fits), a checkpoint file, "
    "or a 'ganforge export' directory."
)


def one_line(message: str) -> str:
    """``message`` with control characters escaped, so it prints as one line whatever the
    user typed into it (a name with a carriage return or a line separator stays visible),
    and cut to a readable length however much of the user's input it quotes."""
    message = shorten(message)
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn user-facing errors into one line on stderr and their exit status."""
    from pydantic import ValidationError

    try:
        yield
    except GanforgeError as exc:
        if not_main_rank() and not getattr(exc, "every_rank", False):
            raise typer.Exit(exc.exit_code) from None  # rank 0 says it; N copies of a line help no one
        raise fail(str(exc), exc.exit_code) from None
    except ValidationError as exc:
        if not_main_rank():
            raise typer.Exit(2) from None
        raise fail(explain_validation(exc)) from None
    except OSError as exc:  # a full disk, a read-only directory: the environment, not a bug
        where = f" ({exc.filename})" if exc.filename else ""
        raise fail(f"{exc.strerror or exc}{where}", 1) from None


def not_main_rank() -> bool:
    """Whether this process is a rank other than 0 of a torchrun job (which stays quiet)."""
    import os

    return os.environ.get("RANK", "0") not in ("", "0") and os.environ.get("WORLD_SIZE", "1") not in ("", "1")


def explain_validation(exc: Any) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        flag = FLAGS.get(loc[0], loc[0]) if loc else "config"
        where = " ".join([flag, *loc[1:]])
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown setting {quote('.'.join(loc))}; valid: {', '.join(FLAGS)}")
        else:
            parts.append(f"{where}: {shorten(error['msg'], 500)} (got {quote(error.get('input'))})")
    return "; ".join(parts)


def warn(message: str) -> None:
    """One ``warning:`` line on stderr (rank 0 alone under torchrun)."""
    if not not_main_rank():
        typer.echo(f"warning: {one_line(message)}", err=True)


def warn_about_plugins() -> None:
    if not_main_rank():
        return  # rank 0 warns
    from ganforge_core.plugins import get_plugins

    for problem in get_plugins().registry.problems:
        typer.echo(f"warning: {problem}", err=True)


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise fail(f"config file {path} is not UTF-8 text") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise fail(f"config file {path} is nested too deeply to read (at most {MAX_DEPTH} levels)") from None
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"config file {path} is not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise fail(f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError as exc:
        if not str(exc).startswith(NOT_JSON):
            raise
        raise fail(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise fail(f"config file {path} must hold a table of settings")
    if _depth(data) > MAX_DEPTH:
        raise fail(f"config file {path} is nested more than {MAX_DEPTH} levels deep; no setting needs that")
    return data


MAX_DEPTH = 16  # tables and lists in a config file; the deepest real setting is 3 (a component's option)
NOT_JSON = "Infinity, -Infinity and NaN are not JSON"


def _not_json(constant: str) -> Any:
    raise ValueError(f"{NOT_JSON} (found {constant}); numbers in a config are finite")


def _depth(data: Any) -> int:
    """How deeply tables and lists nest in ``data`` (iteratively: no recursion to run out of)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
