"""The component catalogue in docs/ is generated from the registry and must stay in step."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from ganforge_core.catalogue import catalogue, markdown, print_catalogue
from ganforge_core.plugins import ALLOW_LIST_VARIABLE, Plugins

ROOT = Path(__file__).resolve().parents[1]


def builtin_plugin_names() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return sorted(project["project"]["entry-points"]["ganforge"])


@pytest.fixture()
def builtins_only(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, ",".join(builtin_plugin_names()))
    return Plugins()


def test_every_builtin_plugin_loads_without_problems(builtins_only: Plugins) -> None:
    assert builtins_only.registry.problems == []
    assert sorted(builtins_only.registry.plugins) == builtin_plugin_names()


def test_components_page_is_generated_from_the_registry(builtins_only: Plugins) -> None:
    expected = markdown(catalogue(builtins_only.registry))
    page = (ROOT / "docs" / "components.md").read_text()
    assert page == expected, "regenerate with: ganforge plugins --markdown > docs/components.md"


def test_every_builtin_component_names_its_paper_or_says_why_not(builtins_only: Plugins) -> None:
    # Schedules are engineering, not papers; every modelling component cites its source.
    cited = [c for c in builtins_only.registry.all() if c.kind != "scheduler"]
    assert cited and all(c.paper for c in cited), [c.label for c in cited if not c.paper]


# -- ganforge plugins, read by a person ------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_keeps_every_summary_and_option_whole_within_the_width(builtins_only: Plugins, width: int) -> None:
    data = catalogue(builtins_only.registry)
    screen = io.StringIO()
    print_catalogue(data, Console(file=screen, width=width, force_terminal=False, color_system=None))
    lines = screen.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    assert [line for line in lines if line != line.rstrip()] == [], "a pipe gets no padding at the line ends"
    # Only the summary column wraps: its lines, joined, are the summary and the options.
    flat = " ".join(screen.getvalue().split())
    for plugin in data["plugins"]:
        assert f"plugin {plugin['name']}" in flat
        for comp in plugin["components"]:
            options = ", ".join(f"{o['name']}={o['default']}" for o in comp["options"])
            cell = comp["summary"] + (f" options: {options}" if options else "")
            assert f"{comp['kind']} {comp['name']} {' '.join(cell.split())}" in flat, comp["name"]


def test_the_json_catalogue_is_plain_text(builtins_only: Plugins) -> None:
    data = catalogue(builtins_only.registry)
    mnist = next(c for p in data["plugins"] for c in p["components"] if c["name"] == "mnist")
    assert {o["name"]: o["type"] for o in mnist["options"]}["split"] == "train | test"
    assert "\\" not in json.dumps(data, ensure_ascii=False).replace("\\n", ""), "no Markdown escapes in the data"
    # The Markdown page escapes the same text for its tables.
    assert "| `split` | train \\| test | `train` |" in markdown(data)
