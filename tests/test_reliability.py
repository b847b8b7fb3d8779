"""Never lose a run: shared helpers for the reliability tests, and plugin isolation.

The reliability suite is split by promise:

* ``test_reliability_checkpoints.py``: atomic writes, safe loading, bad input;
* ``test_reliability_resume.py``: bit-identical resume, one log record per step,
  the lifecycle hooks around a signal;
* ``test_reliability_processes.py``: SIGINT, SIGTERM and kill -9 on a real process;
* ``test_reliability_nan.py``: a NaN stops the run, names phase and step, keeps the
  good checkpoint;
* ``test_reliability_monitors.py``: the ``monitors`` plugin's health warnings;
* this file: the helpers they share, and plugin isolation (``GANFORGE_PLUGINS``,
  a plugin that fails to import, a lifecycle hook that raises).

Everything trains tiny networks on one CPU thread so the suite stays fast on a
shared machine. ``docs/reliability.md`` maps each promise to its test.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, get_args

import annotated_types
import pytest
import torch
from pydantic import Field, ValidationError

from ganforge_core import Options, RunConfig, hookimpl
from ganforge_core import checkpoint as ckpt
from ganforge_core.plugins import ALLOW_LIST_VARIABLE, Plugins
from ganforge_core.session import train

GANFORGE = Path(sys.executable).parent / "ganforge"
TINY_MLP = {
    "generator": "mlp:hidden=16,depth=1",
    "discriminator": "mlp:hidden=16,depth=1",
    "dataset": "ring-8:n=512",
}
TINY_ARGS = [
    "--gen", "mlp:hidden=16,depth=1", "--disc", "mlp:hidden=16,depth=1", "--data", "ring-8:n=512", "--device", "cpu",
]  # fmt: skip


# -- helpers shared by the reliability tests ------------------------------------------


def tiny_config(out: Path, **fields: Any) -> RunConfig:
    """A tiny MLP run on ring-8, on the CPU, without end-of-run metrics."""
    return RunConfig.model_validate(
        {**TINY_MLP, "device": "cpu", "batch_size": 64, "metrics": [], "out": str(out), **fields}
    )


def subprocess_env() -> dict[str, str]:
    """The environment of a ``ganforge`` subprocess: every installed plugin, one thread, no colour."""
    env = {k: v for k, v in os.environ.items() if k != ALLOW_LIST_VARIABLE}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_COLOR="1", COLUMNS="250", PYTHONUNBUFFERED="1")
    return env


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """``ganforge ARGS`` in this process: (exit status, stderr). An escaping exception fails the test."""
    from ganforge_core.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["ganforge", *map(str, args)])
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:
        code = 0
    return code, capsys.readouterr().err


def assert_one_error_line(stderr: str, *mentions: str) -> str:
    """Exactly one ``error:`` line, no traceback; returns the line."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for text in mentions:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    return errors[0]


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def logged_steps(run_dir: Path) -> list[int]:
    """Steps of the statistics records (warnings and evaluations are events, not steps)."""
    return [r["step"] for r in records(run_dir) if "event" not in r]


def install_plugin(root: Path, entry_name: str, module: str, source: str) -> Path:
    """Install a plugin module as a distribution under ``root`` (put ``root`` on sys.path / PYTHONPATH).

    A ``.dist-info`` folder with an ``entry_points.txt`` is what pip leaves behind, so
    ganforge finds the plugin through its entry-point group like any installed package.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    dist = root / f"{module}-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(f"[ganforge]\n{entry_name} = {module}\n")
    return root


def assert_identical(a: Any, b: Any, where: str = "state") -> None:
    """Bit-identical nested checkpoint state: same keys, types, dtypes and tensor bits."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{where}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
        both_nan = a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
        same = torch.equal(a, b) or (both_nan and torch.equal(a.nan_to_num(), b.nan_to_num()))
        assert same, f"{where} differs (max abs diff {(a.double() - b.double()).abs().max().item():.3g})"
    elif isinstance(a, dict):
        assert isinstance(b, dict), f"{where}: {type(b).__name__} instead of a dict"
        assert set(a) == set(b), f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def all_finite(state: Any) -> bool:
    if isinstance(state, torch.Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(all_finite(v) for v in state.values())
    if isinstance(state, list | tuple):
        return all(all_finite(v) for v in state)
    if isinstance(state, float):
        return math.isfinite(state)
    return True


class SignalAt:
    """A lifecycle plugin that sends this process a signal at the end of step ``step``.

    It refuses to send SIGINT when no handler is installed: a bare SIGINT would end
    the whole test session instead of failing one test.
    """

    def __init__(self, step: int, signum: int = signal.SIGINT) -> None:
        self.step, self.signum = step, signum

    @hookimpl
    def ganforge_step_end(self, run: Any, step: int, stats: dict[str, float]) -> None:
        if step != self.step:
            return
        handler = signal.getsignal(self.signum)
        assert handler not in (signal.default_int_handler, signal.SIG_DFL), (
            f"training installed no {signal.Signals(self.signum).name} handler"
        )
        os.kill(os.getpid(), self.signum)


# -- plugin isolation ---------------------------------------------------------------------


def test_allow_list_loads_only_the_named_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "mlp, losses,schedules,datasets")
    loaded = Plugins().registry
    assert sorted(loaded.plugins) == ["datasets", "losses", "mlp", "schedules"]
    assert loaded.problems == []
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "")
    assert Plugins().registry.plugins == []


def test_monitors_are_a_builtin_plugin_that_the_allow_list_can_leave_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_LIST_VARIABLE, raising=False)
    everything = Plugins().registry
    assert "monitors" in everything.plugins and everything.problems == []
    assert not [c for c in everything.all() if c.plugin == "monitors"], "monitors register no components"
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "mlp,losses,schedules,datasets")
    assert "monitors" not in Plugins().registry.plugins


def test_a_plugin_that_fails_to_import_is_named_and_the_others_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = install_plugin(tmp_path / "site", "broken", "ganforge_test_broken", "raise ImportError('no such thing')\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(ALLOW_LIST_VARIABLE, raising=False)
    registry = Plugins().registry
    problems = [str(p) for p in registry.problems]
    assert len(problems) == 1 and "'broken'" in problems[0] and "no such thing" in problems[0], problems
    assert "losses" in registry.plugins and registry.names("loss")


class RaisingObserver:
    """A lifecycle plugin with a bug: its step hook raises at step 3."""

    @hookimpl
    def ganforge_step_end(self, run: Any, step: int, stats: dict[str, float]) -> None:
        if step == 3:
            raise ZeroDivisionError("observer bug")


def test_a_lifecycle_hook_that_raises_does_not_end_the_run(tmp_path: Path) -> None:
    """Promise: plugin problems are isolated. An observer's bug is reported, naming the
    plugin, and the run trains on; it must not end the run and lose the steps since the
    last checkpoint."""
    out = tmp_path / "run"
    plugins = Plugins(extra=[("buggy-observer", RaisingObserver())])
    try:
        result = train(tiny_config(out, steps=6, log_every=1), plugins=plugins, quiet=True)
    except ZeroDivisionError:
        kept = ckpt.list_checkpoints(out)
        pytest.fail(f"an observer plugin's exception ended the run at step 3; checkpoints left: {kept}")
    assert result.step == 6
    warnings = [r["message"] for r in records(out) if r.get("event") == "warning"]
    assert any("buggy-observer" in w for w in warnings), warnings



def test_an_unknown_name_in_the_allow_list_is_named_with_the_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "mlp,nosuch,lossess")
    registry = Plugins().registry
    assert registry.plugins == ["mlp"]
    installed = ", ".join(sorted(ep.name for ep in entry_points(group="ganforge")))
    assert [str(p) for p in registry.problems] == [
        f"plugin 'lossess': {ALLOW_LIST_VARIABLE} names it, but no installed plugin has that name "
        f"(did you mean 'losses'?); installed: {installed}",
        f"plugin 'nosuch': {ALLOW_LIST_VARIABLE} names it, but no installed plugin has that name; "
        f"installed: {installed}",
    ]


FAILING_FACTORIES = """
    from ganforge_core import hookimpl

    def explode(options, ctx):
        raise RuntimeError("out of cheese")

    @hookimpl
    def ganforge_register_generators(register):
        register("exploding", explode, summary="its factory raises")

    @hookimpl
    def ganforge_register_loggers(register):
        register("exploding", explode, summary="its factory raises")
"""


def test_a_factory_that_raises_is_one_line_naming_the_plugin_and_the_component(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Promise: a component whose factory raises (a plugin's bug) stops the run before it
    trains with one line naming the plugin and the component, exit status 2. A logger's
    factory that raises is only warned about: the run goes on without it."""
    from ganforge_core import plugins

    site = install_plugin(tmp_path / "site", "faulty", "ganforge_test_faulty_factories", FAILING_FACTORIES)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(ALLOW_LIST_VARIABLE, raising=False)
    plugins.reset()
    try:
        common = ["--disc", "mlp:hidden=8,depth=1", "--data", "ring-8:n=256", "--steps", "2", "-q", "--device", "cpu"]
        code, stderr = run_cli(monkeypatch, capsys, "run", "--gen", "exploding", *common, "--out", tmp_path / "g")
        assert code == 2, stderr
        assert assert_one_error_line(stderr) == (
            "error: plugin 'faulty': generator 'exploding' failed to build: RuntimeError('out of cheese')"
        )
        assert not ckpt.list_checkpoints(tmp_path / "g")
        code, stderr = run_cli(monkeypatch, capsys, "run", "--gen", "mlp:hidden=8,depth=1", *common,
                               "--logger", "exploding", "--out", tmp_path / "l")  # fmt: skip
        assert code == 0, stderr
        warnings = [r["message"] for r in records(tmp_path / "l") if r.get("event") == "warning"]
        assert warnings == [
            "plugin 'faulty': logger 'exploding' could not start (RuntimeError('out of cheese')); "
            "the run goes on without it"
        ]
        assert logged_steps(tmp_path / "l") == [2]
    finally:
        plugins.reset()


def test_every_number_option_refuses_what_no_option_means() -> None:
    """Promise: every float option of every installed component refuses inf and NaN,
    every int option an int past 64 bits, and neither takes true for a number; a
    string from ``NAME:key=value`` still becomes the int it spells."""
    from ganforge_core import get_registry
    from ganforge_core.errors import ConfigError

    checked = {float: 0, int: 0}
    for component in get_registry().all():
        for name, info in component.options.model_fields.items():
            kinds = {info.annotation, *get_args(info.annotation)}
            number = float if float in kinds else int if int in kinds and bool not in kinds else None
            if number is None:
                continue
            checked[number] += 1
            bad = ["inf", "-inf", "nan", math.inf, math.nan] if number is float else [str(2**64), 2**64]
            for value in [*bad, True]:
                with pytest.raises(ConfigError, match=rf"^{re.escape(component.label)}: option '{name}'"):
                    component.validate({name: value})
    assert checked[float] >= 10 and checked[int] >= 40, checked
    # A third-party option without an upper bound still fits in 64 bits (torch's seeds and sizes).

    class Unbounded(Options):
        count: int = Field(1, description="any int")

    with pytest.raises(ValidationError, match="must fit in a signed 64-bit integer"):
        Unbounded.model_validate({"count": str(2**63)})
    assert Unbounded.model_validate({"count": str(2**63 - 1)}).count == 2**63 - 1
    assert get_registry().get("generator", "mlp").validate({"hidden": "5"}).hidden == 5


BOUNDS = (annotated_types.Le, annotated_types.Lt)


def test_every_int_option_of_a_builtin_component_has_an_upper_bound() -> None:
    """Promise: a size no machine has (``--data ring-8:n=100000000000``) is refused before
    it is allocated, because each built-in int option has a limit (``le=``), which the
    error line names."""
    from ganforge_core.plugins import get_plugins

    builtin = get_plugins().builtin
    assert {"mlp", "datasets", "regularizers"} <= builtin
    unbounded = [
        f"{c.label}: {name}"
        for c in get_plugins().registry.all()
        if c.plugin in builtin
        for name, info in c.options.model_fields.items()
        if int in {info.annotation, *get_args(info.annotation)}
        and info.annotation is not bool
        and not any(isinstance(m, BOUNDS) for m in info.metadata)
    ]
    assert unbounded == []


# -- the promises document ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_reliability_doc_maps_every_promise_to_a_test_that_exists() -> None:
    """docs/reliability.md names each test as ``tests/FILE::NAME``: each must exist, and
    every reliability test must be named there."""
    doc = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(tests/test_reliability\w*\.py)::(test_\w+)`", doc))
    defined = {
        (str(path.relative_to(ROOT)), name)
        for path in sorted((ROOT / "tests").glob("test_reliability*.py"))
        for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.MULTILINE)
    }
    assert named - defined == set(), "docs/reliability.md names tests that do not exist"
    this = ("tests/test_reliability.py", "test_reliability_doc_maps_every_promise_to_a_test_that_exists")
    unnamed = defined - named - {this}
    assert unnamed == set(), "reliability tests that docs/reliability.md does not name"
