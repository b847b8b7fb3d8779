"""The docs stay true to the code: every hook documented, every quoted snippet real.

In the spirit of datasette's ``test_docs.py``. Code in ``docs/plugins.md`` is
quoted from real files: a fenced block right after a line
``<!-- from: PATH -->`` must appear verbatim in ``PATH`` (relative to the
repository root), up to a common indentation removed from the quoted lines.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
from collections import Counter
from dataclasses import fields
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

import ganforge_core
from ganforge_core import get_registry, hookspecs
from ganforge_core.plugins import REGISTER_HOOKS
from ganforge_core.registry import Register

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("ganforge_"))
QUOTED_BLOCK = re.compile(r"^<!-- from: (?P<path>\S+) -->\n```[\w-]*\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)


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


def quoted_blocks() -> list[tuple[str, str]]:
    return [(m["path"], m["code"]) for m in QUOTED_BLOCK.finditer((DOCS / "plugins.md").read_text())]


def quoted_block_params() -> list[Any]:
    seen: Counter[str] = Counter()
    params = []
    for path, code in quoted_blocks():
        seen[path] += 1
        params.append(pytest.param(path, code, id=f"{path}#{seen[path]}"))
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


@pytest.mark.parametrize(("path", "code"), quoted_block_params())
def test_quoted_code_appears_verbatim_in_its_file(path: str, code: str) -> None:
    source = ROOT / path
    assert source.is_file(), f"docs/plugins.md quotes {path}, which does not exist"
    assert appears_in(code, source.read_text()), f"this block is no longer in {path}:\n{code}"


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
