"""The docs stay true to the code: every hook documented, every quoted snippet real, all code runs.

In the spirit of datasette's ``test_docs.py``. Code in the docs is quoted from
real files: a fenced block right after a line ``<!-- from: PATH -->`` must
appear verbatim in ``PATH`` (relative to the repository root), up to a common
indentation removed from the quoted lines.

Every other ```` ```python ```` block in ``docs/*.md`` and ``README.md`` is run:
a page's blocks in order, in one fresh interpreter (like notebook cells), in an
empty temporary directory. Training there is cut short: every ``steps`` a block
asks for is divided by ``STEP_SCALE``. A block that is not meant to run (a
signature, an excerpt) says so on the line before it: ``<!-- not run: REASON -->``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import fields
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

import ganforge_core
import ganforge_core.testing
from ganforge_core import get_registry, hookspecs
from ganforge_core.plugins import REGISTER_HOOKS
from ganforge_core.registry import Register

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("ganforge_"))
QUOTED_BLOCK = re.compile(r"^<!-- from: (?P<path>\S+) -->\n```[\w-]*\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
PYTHON_BLOCK = re.compile(r"^(?:(?P<marker><!--[^\n]*-->)\n)?```python\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
SKIP_MARKER = re.compile(r"^<!-- (from: \S+|not run: \S.*) -->$")
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
STEP_SCALE = 100


def section(text: str, heading: str) -> str:
    """The body under ``## heading`` up to the next heading of level 1 or 2."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^#{{1,2}} |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def annotation(value: Any) -> str:
    # hookspecs.py and registry.py use postponed annotations, so these are source text.
    return value if isinstance(value, str) else inspect.formatannotation(value)


def hook_signature(name: str) -> str:
    signature = inspect.signature(getattr(hookspecs, name))
    parameters = ", ".join(f"{p.name}: {annotation(p.annotation)}" for p in signature.parameters.values())
    return f"def {name}({parameters}) -> {annotation(signature.return_annotation)}"


def default_text(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return getattr(value, "__name__", None) or repr(value)


# -- docs/hooks.md -------------------------------------------------------------


def test_hooks_include_one_registration_hook_per_kind_and_lifecycle_hooks() -> None:
    assert set(REGISTER_HOOKS.values()) < set(HOOKS), HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_exact_signature(hook: str) -> None:
    body = section((DOCS / "hooks.md").read_text(), hook)
    assert hook_signature(hook) in body
    options = getattr(getattr(hookspecs, hook), f"{hookspecs.PROJECT}_spec")
    if options.get("firstresult"):
        assert "firstresult" in body, f"{hook} stops at the first result; say so"


def test_hooks_reference_documents_no_hook_that_does_not_exist() -> None:
    documented = re.findall(r"^## (ganforge_\w+)$", (DOCS / "hooks.md").read_text(), re.MULTILINE)
    assert sorted(documented) == HOOKS


def test_register_callback_is_documented_with_every_parameter() -> None:
    body = section((DOCS / "hooks.md").read_text(), "The `register` callback")
    parameters = list(inspect.signature(Register.__call__).parameters.values())[1:]  # skip self
    assert parameters, "Register.__call__ lost its parameters"
    for p in parameters:
        expected = f"{p.name}: {annotation(p.annotation)}"
        if p.default is not inspect.Parameter.empty:
            expected += f" = {default_text(p.default)}"
        assert expected in body, f"register(...) parameter not documented as: {expected}"
        assert f"| `{p.name}` |" in body, f"register(...) parameter {p.name} has no row in the table"


def test_build_context_fields_are_documented() -> None:
    body = section((DOCS / "hooks.md").read_text(), "The `register` callback")
    missing = [f.name for f in fields(ganforge_core.BuildContext) if f"| `{f.name}` |" not in body]
    assert missing == []


@pytest.mark.parametrize(
    ("protocol", "hook"),
    [
        ("Loss", "ganforge_register_losses"),
        ("Regularizer", "ganforge_register_regularizers"),
        ("Schedule", "ganforge_register_schedulers"),
        ("Metric", "ganforge_register_metrics"),
    ],
)
def test_protocol_methods_are_documented_under_their_hook(protocol: str, hook: str) -> None:
    methods = [name for name, _ in inspect.getmembers(getattr(ganforge_core, protocol), inspect.isfunction)]
    public = [name for name in methods if not name.startswith("_")]
    assert public, f"{protocol} has no public methods"
    body = section((DOCS / "hooks.md").read_text(), hook)
    assert [name for name in public if f"`{name}" not in body] == []


def test_run_context_fields_are_documented() -> None:
    # RunContext is imported by hookspecs.py for type checking only; follow that import.
    where = re.search(r"^\s*from (\S+) import RunContext$", inspect.getsource(hookspecs), re.MULTILINE)
    assert where, "hookspecs.py no longer imports RunContext"
    run_context = importlib.import_module(where[1]).RunContext
    body = section((DOCS / "hooks.md").read_text(), "ganforge_train_start")
    missing = [f.name for f in fields(run_context) if f"`{f.name}`" not in body]
    assert missing == []


# -- docs/plugins.md -------------------------------------------------------------


def quoted_blocks(page: str = "plugins.md") -> list[tuple[str, str]]:
    return [(m["path"], m["code"]) for m in QUOTED_BLOCK.finditer((DOCS / page).read_text())]


def quoted_block_params() -> list[Any]:
    seen: Counter[str] = Counter()
    params = []
    for page in sorted(p.name for p in DOCS.glob("*.md")):
        for path, code in quoted_blocks(page):
            seen[page, path] += 1
            params.append(pytest.param(page, path, code, id=f"{page}:{path}#{seen[page, path]}"))
    return params


def appears_in(code: str, source: str) -> bool:
    """``code`` is a run of whole lines of ``source``, up to removing common indentation."""
    wanted = code.rstrip("\n").splitlines()
    lines = source.splitlines()
    return any(
        textwrap.dedent("\n".join(lines[i : i + len(wanted)])) == "\n".join(wanted)
        for i in range(len(lines) - len(wanted) + 1)
    )


def test_plugin_tutorial_quotes_every_file_of_the_example_plugin() -> None:
    quoted = {path for path, _ in quoted_blocks()}
    plugin = ROOT / "examples" / "ganforge-rsgan"
    sources = [*plugin.glob("ganforge_rsgan/*.py"), *plugin.glob("tests/*.py")]
    files = {"pyproject.toml", *(str(p.relative_to(plugin)) for p in sources)}
    assert quoted == {f"examples/ganforge-rsgan/{name}" for name in files}


@pytest.mark.parametrize(("page", "path", "code"), quoted_block_params())
def test_quoted_code_appears_verbatim_in_its_file(page: str, path: str, code: str) -> None:
    source = ROOT / path
    assert source.is_file(), f"docs/{page} quotes {path}, which does not exist"
    assert appears_in(code, source.read_text()), f"this block of docs/{page} is no longer in {path}:\n{code}"


def test_testing_guide_quotes_every_example_test_that_uses_ganforge_testing() -> None:
    path = "examples/ganforge-rsgan/tests/test_ganforge_rsgan.py"
    module = ast.parse((ROOT / path).read_text())
    helpers = {name for name in dir(ganforge_core.testing) if name.startswith("check_") or name == "smoke_train"}
    using = sorted(
        node.name
        for node in module.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        for call in ast.walk(node)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in helpers
    )
    assert len(set(using)) >= 4, using
    quoted = "\n".join(code for quoted_path, code in quoted_blocks("testing-plugins.md") if quoted_path == path)
    assert [name for name in sorted(set(using)) if f"def {name}(" not in quoted] == []


def test_quote_check_rejects_changed_or_partial_lines() -> None:
    source = "def f():\n    return 1\n"
    assert appears_in("return 1\n", source)
    assert not appears_in("return 2\n", source)
    assert not appears_in("turn 1\n", source)


# -- docs/components.md ----------------------------------------------------------


def test_every_built_in_component_is_in_the_catalogue() -> None:
    catalogue = DOCS / "components.md"
    if not catalogue.exists():
        pytest.skip("docs/components.md is not written yet")
    # Only ganforge's own plugins: a third-party plugin installed here is not ours to list.
    ours = {ep.name for ep in distribution("ganforge").entry_points if ep.group == "ganforge"}
    registered = Counter(c.name for c in get_registry().all() if c.plugin in ours)
    assert registered, "no built-in component is registered"
    headings = [line for line in catalogue.read_text().splitlines() if line.startswith("#")]
    documented = Counter(
        name for name in registered for line in headings if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", line)
    )
    missing = {name: n - documented[name] for name, n in registered.items() if documented[name] < n}
    assert missing == {}, f"components without a heading in docs/components.md: {missing}"


# -- code in the docs runs ---------------------------------------------------------

# Runs each page's blocks in order, in a namespace and a directory of its own, with
# training cut short; prints {page: None, or the traceback of the block that failed}.
BLOCK_RUNNER = """
import json, math, os, sys, traceback
import ganforge_core.session as session

pages, scale = json.loads(sys.argv[1]), int(sys.argv[2])
train = session.train


def short(steps):
    return max(2, math.ceil(steps / scale))


def short_train(config, *, resume=None, overrides=None, **kwargs):
    if config is not None:
        config = config.model_copy(update={"steps": short(config.steps)})
    if overrides and "steps" in overrides:
        overrides = {**overrides, "steps": short(overrides["steps"])}
    return train(config, resume=resume, overrides=overrides, **kwargs)


session.train = short_train
failures = {}
for number, (page, blocks) in enumerate(pages.items()):
    os.makedirs(str(number))
    os.chdir(str(number))
    namespace = {"__name__": "__main__"}
    try:
        for line, code in blocks:
            # Padded so that a traceback names the line of the page.
            exec(compile("\\n" * line + code, page, "exec"), namespace)
        failures[page] = None
    except BaseException:
        failures[page] = traceback.format_exc()
    os.chdir("..")
print(json.dumps(failures))
"""


def python_blocks(page: Path) -> list[tuple[int, str | None, str]]:
    """(line of the first code line, marker or None, code) for each ```python block of ``page``."""
    text = page.read_text()
    return [(text.count("\n", 0, m.start("code")), m["marker"], m["code"]) for m in PYTHON_BLOCK.finditer(text)]


def runnable(page: Path) -> list[tuple[int, str]]:
    return [(line, code) for line, marker, code in python_blocks(page) if marker is None]


def test_every_python_block_runs_or_says_why_not() -> None:
    unexplained = [
        f"{page.relative_to(ROOT)}:{line}: {marker}"
        for page in PAGES
        for line, marker, _ in python_blocks(page)
        if marker is not None and not SKIP_MARKER.match(marker)
    ]
    assert unexplained == [], "a comment before a python block must be <!-- from: PATH --> or <!-- not run: REASON -->"


def test_the_api_guide_and_the_testing_guide_have_code_that_runs() -> None:
    api = "\n".join(code for _, code in runnable(DOCS / "api.md"))
    for call in ("RunConfig(", "resolve(", "train(", "resume=", "load_trained(", ".draw(", ".evaluate(", "load_safe("):
        assert call in api, f"docs/api.md has no runnable example of {call}"
    testing = "\n".join(code for _, code in runnable(DOCS / "testing-plugins.md"))
    assert "check_component(" in testing and "check_isolation(" in testing


@pytest.fixture(scope="module")
def block_failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Every page's blocks, run in one interpreter (starting one, and importing torch, takes seconds)."""
    pages = {str(page.relative_to(ROOT)): runnable(page) for page in PAGES if runnable(page)}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("GANFORGE_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_RUNNER, json.dumps(pages), str(STEP_SCALE)],
        cwd=tmp_path_factory.mktemp("docs-code"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    failures: dict[str, str | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return failures


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_of_the_page_run(page: Path, block_failures: dict[str, str | None]) -> None:
    failure = block_failures[str(page.relative_to(ROOT))]
    assert failure is None, f"a python block of {page.relative_to(ROOT)} failed:\n{failure}"
