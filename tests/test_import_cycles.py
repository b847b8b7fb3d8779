"""No import cycles inside ganforge_core.

The graph is read from the source with ``ast``: every ``import`` statement, at module
level or inside a function (a lazy import that closes a cycle is still a cycle: two
modules that each need the other, as ``cli`` and ``clidocs`` once did), except those
under ``if TYPE_CHECKING:``, which never run. Importing a submodule also runs its
package's ``__init__``; that implicit edge is not counted, only the named module.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ganforge_core"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree`` that can run (not under ``if TYPE_CHECKING:``)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        children = node.orelse if isinstance(node, ast.If) and is_type_checking(node.test) else ast.iter_child_nodes(node)
        pending.extend(children)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in files)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            if base not in files:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in files else base)
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles found by a depth-first walk, each a path back to its start, at most one through a module."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target in path:
                cycle = [*path[path.index(target) :], target]
                if not set(cycle) & {m for c in found for m in c}:
                    found.append(cycle)
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return found


def test_the_cycle_finder_finds_direct_lazy_and_relative_cycles(tmp_path: Path) -> None:
    package = tmp_path / "ganforge_core"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from ganforge_core.a import x\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ganforge_core import b\nx = 1\n")
    (package / "b.py").write_text("def f():\n    from ganforge_core.sub import c\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "c.py").write_text("from .. import b\n")
    graph = import_graph(package)
    assert graph == {
        "ganforge_core": {"ganforge_core.a"},
        "ganforge_core.a": set(),  # only under TYPE_CHECKING
        "ganforge_core.b": {"ganforge_core.sub.c"},
        "ganforge_core.sub": set(),
        "ganforge_core.sub.c": {"ganforge_core.b"},
    }
    assert cycles(graph) == [["ganforge_core.b", "ganforge_core.sub.c", "ganforge_core.b"]]


def test_the_graph_sees_the_real_imports() -> None:
    graph = import_graph(PACKAGE)
    assert "ganforge_core.commands.training" in graph["ganforge_core.cli"]
    assert "ganforge_core.session" in graph["ganforge_core.commands.training"]  # a lazy import counts
    assert "ganforge_core.session" not in graph["ganforge_core.hookspecs"]  # TYPE_CHECKING only


def test_ganforge_core_has_no_import_cycle() -> None:
    assert cycles(import_graph(PACKAGE)) == []
