"""The catalogue of installed components, as data (plain text, for ``--json``), as tables
(``ganforge plugins``) and as Markdown (docs/components.md)."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic_core import PydanticUndefined

from ganforge_core.components import KINDS
from ganforge_core.kinds import BY_NAME
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
    if get_origin(annotation) is Literal:
        return " | ".join(str(a) for a in get_args(annotation))
    text = str(annotation) if get_args(annotation) else getattr(annotation, "__name__", str(annotation))
    return text.replace("typing.", "").replace("pathlib.", "").replace("|", "or")


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
        "needs": list(component.needs),
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


def print_catalogue(data: dict[str, Any], console: Any = None) -> None:
    """One table per plugin: kind and name, then the summary with the options and their
    defaults under it, wrapped to the console's width (80 columns when not on a terminal).
    Only the summary column wraps, so it keeps most of the width whatever the names."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    order = {kind: i for i, kind in enumerate(KINDS)}
    everything = [c for plugin in data["plugins"] for c in plugin["components"]]
    # The same column widths in every plugin's table, so they line up.
    kind_width = max((len(c["kind"]) for c in everything), default=4)
    name_width = max((len(c["name"]) for c in everything), default=4)
    for plugin in data["plugins"]:
        table = Table(
            title=f"plugin {plugin['name']}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
        )
        table.add_column("kind", no_wrap=True, min_width=kind_width)
        table.add_column("name", no_wrap=True, min_width=name_width)
        table.add_column("summary; options (default)", ratio=1, overflow="fold")
        for comp in sorted(plugin["components"], key=lambda c: (order[c["kind"]], c["name"])):
            options = ", ".join(f"{o['name']}={o['default']}" for o in comp["options"])
            text = comp["summary"] + (f"\noptions: {options}" if options else "")
            table.add_row(comp["kind"], comp["name"], Text(text))  # plain text: "[0, 1]" is no markup
        if not plugin["components"]:
            table.add_row("-", "-", "no components (lifecycle hooks or commands only)")
        if console.is_terminal:
            console.print(table, highlight=False)
        else:  # a pipe or a file: the same lines without the cells' padding at their ends
            with console.capture() as captured:
                console.print(table, highlight=False)
            console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    for problem in data["problems"]:
        console.print(f"[yellow]problem:[/] plugin '{problem['plugin']}': {problem['reason']}", highlight=False)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(data: dict[str, Any]) -> str:
    """The component catalogue as Markdown (``docs/components.md`` is this, for the built-ins)."""
    lines = [
        "# Components",
        "",
        "Generated by `ganforge plugins --markdown` from the registry; a test keeps it in step.",
        "Choose a component as `NAME` or `NAME:key=value,key=value`.",
    ]
    components = [c | {"plugin": p["name"]} for p in data["plugins"] for c in p["components"]]
    for kind in KINDS:
        chosen = sorted((c for c in components if c["kind"] == kind), key=lambda c: c["name"])
        if not chosen:
            continue
        lines += ["", f"## {BY_NAME[kind].plural.capitalize()}"]
        for comp in chosen:
            lines += ["", f"### `{comp['name']}`", "", comp["summary"] + ".", ""]
            facts = [f"plugin `{comp['plugin']}`"]
            if comp["paper"]:
                facts.append(f"from {comp['paper']}")
            if comp["requires"]:
                facts.append("needs a dataset that is " + ", ".join(comp["requires"]))
            if comp["needs"]:
                facts.append("needs the Python package(s) " + ", ".join(f"`{n}`" for n in comp["needs"]))
            lines.append("; ".join(facts) + ".")
            if comp["recommends"]:
                r = comp["recommends"]
                lines += ["", f"Recommends Adam lr_g {r['lr_g']}, lr_d {r['lr_d']}, betas {tuple(r['betas'])}, "
                          f"{r['d_steps']} D step(s) per G step."]
            for trait, reason in comp["conflicts"].items():
                lines += ["", f"Refused with a component that is `{trait}`: {reason}."]
            if comp["options"]:
                lines += ["", "| option | type | default | description |", "|---|---|---|---|"]
                for o in comp["options"]:
                    lines.append(
                        f"| `{o['name']}` | {_cell(o['type'])} | `{o['default']}` | {_cell(o['description'])} |"
                    )
    return "\n".join(lines) + "\n"
