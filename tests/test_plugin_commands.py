"""Plugin commands (``ganforge_register_commands``): added beside the core's, never over them,
with errors as one line; docs/plugins.md's example is the plugin under test."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ganforge_core import ConfigError, hookimpl
from ganforge_core.cli import add_plugin_commands, app
from ganforge_core.plugins import ALLOW_LIST_VARIABLE, Plugins

DOCS = Path(__file__).resolve().parents[1] / "docs"


def plugin(name: str, register_commands: Callable[[typer.Typer], None]) -> tuple[str, ModuleType]:
    module = ModuleType(f"ganforge_test_{name}")
    module.ganforge_register_commands = hookimpl(register_commands)  # type: ignore[attr-defined]
    return name, module


def documented_plugin() -> tuple[str, ModuleType]:
    """The plugin of docs/plugins.md's "Adding a command", run as written there."""
    page = (DOCS / "plugins.md").read_text()
    section = page.split("## Adding a command\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"^```python\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert code is not None, "docs/plugins.md's 'Adding a command' has no python block"
    module = ModuleType("ganforge_steps")
    exec(compile(code[1], "docs/plugins.md", "exec"), module.__dict__)  # noqa: S102 - our own docs
    return "steps-plugin", module


def core_stand_in() -> typer.Typer:
    """An app with the core's kind of commands: ``run`` and a ``config`` group."""
    cli = typer.Typer(pretty_exceptions_enable=False)

    @cli.command()
    def run() -> None:
        typer.echo("core run")

    config = typer.Typer(name="config")

    @config.command("show")
    def show() -> None:
        typer.echo("core config show")

    cli.add_typer(config)
    return cli


def load(monkeypatch: pytest.MonkeyPatch, *plugins: tuple[str, Any]) -> tuple[typer.Typer, list[str], list[str]]:
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "")  # the test's plugins only
    cli, warnings = core_stand_in(), []
    added = add_plugin_commands(cli, Plugins(extra=plugins), warnings.append)
    return cli, added, warnings


def test_documented_command_runs_and_reports_bad_input_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cli, added, warnings = load(monkeypatch, documented_plugin())
    assert (added, warnings) == (["steps"], [])
    (tmp_path / "config.json").write_text(json.dumps({"steps": 1234}))
    result = CliRunner().invoke(cli, ["steps", str(tmp_path)])
    assert (result.exit_code, result.output) == (0, "1234\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["steps", str(empty)])
    assert result.exit_code == 2
    assert result.output == f"error: {empty} is not a run directory: it has no config.json\n"
    assert isinstance(result.exception, SystemExit)  # not the ConfigError itself


def test_clashing_names_keep_the_core_and_the_first_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    def first(cli: typer.Typer) -> None:
        @cli.command("run")
        def impostor() -> None:
            typer.echo("impostor run")

        @cli.command()
        def extra() -> None:
            typer.echo("first extra")

    def second(cli: typer.Typer) -> None:
        @cli.command("extra")
        def late() -> None:
            typer.echo("second extra")

        cli.add_typer(typer.Typer(name="config"))

    def broken(cli: typer.Typer) -> None:
        @cli.command()
        def half() -> None:
            typer.echo("never added")

        raise RuntimeError("no")

    cli, added, warnings = load(
        monkeypatch, plugin("first", first), plugin("second", second), plugin("broken", broken)
    )
    assert added == ["extra"]
    assert warnings == [
        "plugin 'first': command 'run' is taken by ganforge; not added",
        "plugin 'second': command 'extra' is taken by plugin 'first'; not added",
        "plugin 'second': command 'config' is taken by ganforge; not added",
        "plugin 'broken': ganforge_register_commands raised RuntimeError('no')",
    ]
    runner = CliRunner()
    assert runner.invoke(cli, ["run"]).output == "core run\n"
    assert runner.invoke(cli, ["extra"]).output == "first extra\n"
    assert runner.invoke(cli, ["config", "show"]).output == "core config show\n"
    assert runner.invoke(cli, ["half"]).exit_code == 2  # no such command


def test_errors_in_a_plugin_group_are_one_line_at_any_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    def grouped(cli: typer.Typer) -> None:
        tools = typer.Typer(name="tools")
        deeper = typer.Typer(name="deeper")

        @deeper.command()
        def check(value: int) -> None:
            if value < 0:
                raise ConfigError(f"value must be >= 0, not {value}")
            typer.echo(f"ok {value}")

        tools.add_typer(deeper)
        cli.add_typer(tools)

    cli, added, warnings = load(monkeypatch, plugin("grouped", grouped))
    assert (added, warnings) == (["tools"], [])
    runner = CliRunner()
    assert runner.invoke(cli, ["tools", "deeper", "check", "3"]).output == "ok 3\n"
    result = runner.invoke(cli, ["tools", "deeper", "check", "--", "-1"])
    assert (result.exit_code, result.output) == (2, "error: value must be >= 0, not -1\n")


def test_bench_is_a_plugin_command() -> None:
    bench = next(c for c in app.registered_commands if c.name == "bench")
    assert bench.callback.__wrapped__.__module__ == "ganforge_bench.bench"
