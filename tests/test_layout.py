"""The package layout: no plugin imports another plugin; shared code lives in ganforge_core.

A built-in plugin is a package like any third party's, so it may import
``ganforge_core`` and itself, never a sibling: what two plugins share (gradient
penalties, FID/KID) is in a core module any plugin can import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"


def imported_packages(source: str) -> set[str]:
    """Top-level names of every absolute import in ``source``, wherever it appears (functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def cross_plugin_imports(plugins: Path) -> list[str]:
    """``path: imports ganforge_Y`` for each module of a plugin ganforge_X that imports a sibling plugin."""
    found = []
    for package in sorted(p for p in plugins.iterdir() if (p / "__init__.py").exists()):
        for module in sorted(package.rglob("*.py")):
            for name in sorted(imported_packages(module.read_text())):
                if name.startswith("ganforge_") and name not in {package.name, "ganforge_core"}:
                    found.append(f"{module.relative_to(plugins)}: imports {name}")
    return found


def test_the_plugins_are_found() -> None:
    packages = {p.name for p in PLUGINS.iterdir() if (p / "__init__.py").exists()}
    assert {"ganforge_losses", "ganforge_regularizers", "ganforge_inception", "ganforge_digit_metrics"} <= packages


def test_no_plugin_imports_another_plugin() -> None:
    assert cross_plugin_imports(PLUGINS) == []


def test_a_cross_plugin_import_is_found_at_any_depth(tmp_path: Path) -> None:
    (tmp_path / "ganforge_a").mkdir()
    (tmp_path / "ganforge_a" / "__init__.py").write_text("from ganforge_core import hookimpl\nimport ganforge_a.x\n")
    (tmp_path / "ganforge_a" / "deep.py").write_text("def f():\n    from ganforge_b.maths import g\n")
    (tmp_path / "ganforge_b").mkdir()
    (tmp_path / "ganforge_b" / "__init__.py").write_text("from . import maths\nimport ganforge_a as a\n")
    assert cross_plugin_imports(tmp_path) == [
        "ganforge_a/deep.py: imports ganforge_b",
        "ganforge_b/__init__.py: imports ganforge_a",
    ]


@pytest.mark.parametrize("module", ["ganforge_core.penalties", "ganforge_core.features"])
def test_shared_maths_imports_without_torch(module: str) -> None:
    # Plugins' __init__ modules import these, and `ganforge --help` must not load torch.
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
