"""The catalogue of installed components, as data (for ``--json`` and docs) and as a table."""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticUndefined

from ganforge_core.components import KINDS
from ganforge_core.registry import Component, Registry


def describe_options(component: Component) -> list[dict[str, Any]]:
    described = []
    for name, info in component.options.model_fields.items():
        default = None if info.default is PydanticUndefined else info.default
        described.append(
            {
                "name": name,
                "type": _type_name(info.annotation),
                "default": default if isinstance(default, int | float | str | bool | None) else str(default),
                "description": info.description or "",
            }
        )
    return described


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "")


def describe(component: Component) -> dict[str, Any]:
    recommends = component.recommends
    return {
        "kind": component.kind,
        "name": component.name,
        "summary": component.summary,
        "options": describe_options(component),
        "traits": sorted(component.trait_spec) if not callable(component.trait_spec) else "depends on options",
        "requires": sorted(component.requires),
        "conflicts": dict(component.conflicts),
        "recommends": None if recommends is None else recommends.__dict__ | {"betas": list(recommends.betas)},
        "paper": component.paper,
    }


def catalogue(registry: Registry | None = None) -> dict[str, Any]:
    if registry is None:
        from ganforge_core.plugins import get_plugins

        registry = get_plugins().registry
    plugins: dict[str, list[dict[str, Any]]] = {name: [] for name in registry.plugins}
    for component in registry.all():
        plugins.setdefault(component.plugin, []).append(describe(component))
    return {
        "plugins": [{"name": name, "components": comps} for name, comps in plugins.items()],
        "problems": [{"plugin": p.plugin, "reason": p.reason} for p in registry.problems],
    }


def print_catalogue(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ganforge components", show_lines=True)
    for column in ("plugin", "kind", "name", "options (default)", "summary"):
        table.add_column(column, overflow="fold")
    order = {kind: i for i, kind in enumerate(KINDS)}
    for plugin in data["plugins"]:
        for comp in sorted(plugin["components"], key=lambda c: (order[c["kind"]], c["name"])):
            options = "\n".join(f"{o['name']}={o['default']}" for o in comp["options"]) or "-"
            table.add_row(plugin["name"], comp["kind"], comp["name"], options, comp["summary"])
    console = Console()
    console.print(table)
    for problem in data["problems"]:
        console.print(f"[yellow]problem:[/] plugin '{problem['plugin']}': {problem['reason']}", highlight=False)
