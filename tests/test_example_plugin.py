"""The examples work as documented: the third-party plugin installs and trains, the script runs.

The plugin is really built and installed with pip (into a temporary directory put
on ``PYTHONPATH``), and ganforge runs in a subprocess, so it finds the plugin
through its entry point exactly as it would after ``pip install``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = ROOT / "examples" / "ganforge-rsgan"
TRAIN_RING = ROOT / "examples" / "train_ring.py"
TUTORIAL = ROOT / "docs" / "plugins.md"
TIMEOUT = 300

# Runs each command line in one process and prints what each wrote to stderr.
CLI_DRIVER = """
import contextlib, io, json, sys
from ganforge_core.cli import app
printed = []
for args in json.loads(sys.argv[1]):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        app(args, standalone_mode=False)
    printed.append(stderr.getvalue())
print(json.dumps(printed))
"""


def environment(python_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GANFORGE_PLUGINS"}
    # The networks are tiny: one thread is faster, and several threads on a busy
    # CPU wait on each other for orders of magnitude longer than the work takes.
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    if python_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(python_path), env.get("PYTHONPATH")]))
    return env


def run(*args: str | Path, python_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=ROOT,
        env=environment(python_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the example plugin as pip installed it."""
    work = tmp_path_factory.mktemp("rsgan")
    source, site = work / "source", work / "site"
    # Build a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
    shutil.copytree(PLUGIN_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    installed = run(
        "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", "--quiet", "--target", site, source,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return site


def test_install_writes_the_ganforge_entry_point(site: Path) -> None:
    (dist_info,) = site.glob("ganforge_rsgan-*.dist-info")
    entry_points = (dist_info / "entry_points.txt").read_text()
    assert re.search(r"^\[ganforge\]\s*\nrsgan = ganforge_rsgan$", entry_points, re.MULTILINE), entry_points


def test_plugins_command_lists_both_components_under_the_plugin(site: Path) -> None:
    listed = run("-m", "ganforge_core", "plugins", "--json", python_path=site)
    assert listed.returncode == 0, listed.stderr
    catalogue = json.loads(listed.stdout)
    assert [p for p in catalogue["problems"] if p["plugin"] == "rsgan"] == []
    plugins = {plugin["name"]: plugin["components"] for plugin in catalogue["plugins"]}
    components = {(c["kind"], c["name"]): c for c in plugins["rsgan"]}
    assert set(components) == {("loss", "rsgan"), ("generator", "resmlp")}

    options = components["generator", "resmlp"]["options"]
    assert {o["name"] for o in options} >= {"z_dim", "width", "blocks"}
    assert all(o["description"] for o in options), options
    assert components["loss", "rsgan"]["recommends"]["d_steps"] == 1


def test_cli_trains_with_the_plugin_components(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trained = run(
        "-m", "ganforge_core", "run", "--gen", "resmlp", "--disc", "mlp", "--loss", "rsgan",
        "--data", "ring-8:n=512", "--steps", "10", "--out", out,
        python_path=site,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "plugin 'rsgan'" not in trained.stderr
    assert (out / "checkpoint-00000010.pt").is_file()
    assert (out / "samples.png").stat().st_size > 0
    config = json.loads((out / "config.json").read_text())
    assert (config["generator"]["name"], config["loss"]["name"]) == ("resmlp", "rsgan")


def test_errors_shown_in_the_tutorial_are_the_real_ones(site: Path) -> None:
    shown = re.findall(r"^\$ ganforge (run .*)\n(error: .*)$", TUTORIAL.read_text(), re.MULTILINE)
    assert len(shown) >= 2, shown
    commands = [shlex.split(command) for command, _ in shown]
    driven = run("-c", CLI_DRIVER, json.dumps(commands), python_path=site)
    assert driven.returncode == 0, driven.stderr
    for (command, documented), printed in zip(shown, json.loads(driven.stdout), strict=True):
        assert documented in printed.splitlines(), f"ganforge {command}: docs say {documented!r}, got {printed!r}"


def test_the_plugin_own_tests_pass_against_the_installed_plugin(site: Path) -> None:
    # The example's tests call ganforge_core.testing: the contract of both components,
    # gradient isolation with regularizers, and a short run that must resume exactly.
    tested = run("-m", "pytest", "-v", "-p", "no:cacheprovider", PLUGIN_SOURCE / "tests", python_path=site)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    outcomes = dict(re.findall(r"::(test_\w+)(?:\[.*?\])? (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", tested.stdout))
    assert set(outcomes.values()) == {"PASSED"}, tested.stdout
    assert {
        "test_component_meets_the_ganforge_contract",
        "test_d_and_g_steps_stay_isolated",
        "test_trains_end_to_end_and_resumes_exactly",
        "test_installed_plugin_provides_both_components",
    } <= set(outcomes), tested.stdout


def test_train_ring_script_trains_and_prints_the_mixture_metrics(tmp_path: Path) -> None:
    out = tmp_path / "ring"
    script = run(TRAIN_RING, "--steps", "30", "--out", out)
    assert script.returncode == 0, script.stderr
    assert f"trained 30 steps; run directory {out}" in script.stdout
    printed = dict(re.findall(r"^(\S+/\S+)\s+(-?\d+\.\d{4})$", script.stdout, re.MULTILINE))
    saved = json.loads((out / "results.json").read_text())
    assert set(printed) == set(saved) == {"mixture-modes/modes", "mixture-modes/hq", "mixture-modes/reverse-kl"}
    for name, value in saved.items():
        assert float(printed[name]) == pytest.approx(value, abs=1e-4)
    assert 0 <= saved["mixture-modes/modes"] <= 8
    assert (out / "checkpoint-00000030.pt").is_file()
