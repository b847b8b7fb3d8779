"""The component catalogue in docs/ is generated from the registry and must stay in step."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ganforge_core.catalogue import catalogue, markdown
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
