"""The examples work as documented: the third-party plugins install and work, the script runs.

Each plugin is really built and installed with pip (into a temporary directory put
on ``PYTHONPATH``), and ganforge runs in a subprocess, so it finds the plugin
through its entry point exactly as it would after ``pip install``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = ROOT / "examples" / "ganforge-rsgan"
HAMMING_SOURCE = ROOT / "examples" / "ganforge-hamming"
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


def install(source: Path, work: Path) -> Path:
    """A directory holding the plugin at ``source`` as pip installed it."""
    copy, site = work / "source", work / "site"
    # Build a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    installed = run(
        "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", "--quiet", "--target", site, copy,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the rsgan example plugin as pip installed it."""
    return install(PLUGIN_SOURCE, tmp_path_factory.mktemp("rsgan"))


@pytest.fixture(scope="module")
def hamming_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the hamming example plugin as pip installed it."""
    return install(HAMMING_SOURCE, tmp_path_factory.mktemp("hamming"))


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


# -- ganforge-hamming: data of shape [7] with its own picture, a metric, a logger, two lazy penalties, a command

HAMMING_COMPONENTS = {
    ("dataset", "hamming-7"),
    ("metric", "codewords"),
    ("logger", "csv"),
    ("regularizer", "z-path-length"),
    ("regularizer", "zero-gp"),
}
HAMMING_MARKER = "ganforge-hamming: codewords"  # the PNG title hamming-7's own renderer writes
CODEWORD_ROW = re.compile(r"^\s*(\d+)\s+([01]{7})\s+(\d+)\s+(\d\.\d{4})$", re.MULTILINE)


def png_title(path: Path) -> str | None:
    from PIL import Image

    with Image.open(path) as picture:
        return picture.text.get("Title")


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module")
def hamming_run(hamming_site: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A run trained from the command line with every hamming component: its directory and the process."""
    out = tmp_path_factory.mktemp("hamming-run") / "run"
    trained = run(
        "-m", "ganforge_core", "run", "--gen", "mlp:batchnorm=false,hidden=32,depth=2", "--disc", "mlp:hidden=32,depth=2",
        "--data", "hamming-7:n=512", "--reg", "z-path-length", "--reg", "zero-gp", "--logger", "csv",
        "--steps", "8", "--log-every", "2", "--batch-size", "32", "--device", "cpu", "--out", out,
        python_path=hamming_site,
    )  # fmt: skip
    return out, trained


def test_hamming_install_writes_the_ganforge_entry_point(hamming_site: Path) -> None:
    (dist_info,) = hamming_site.glob("ganforge_hamming-*.dist-info")
    entry_points = (dist_info / "entry_points.txt").read_text()
    assert re.search(r"^\[ganforge\]\s*\nhamming = ganforge_hamming$", entry_points, re.MULTILINE), entry_points


def test_plugins_command_lists_the_five_hamming_components(hamming_site: Path) -> None:
    listed = run("-m", "ganforge_core", "plugins", "--json", python_path=hamming_site)
    assert listed.returncode == 0, listed.stderr
    catalogue = json.loads(listed.stdout)
    assert [p for p in catalogue["problems"] if p["plugin"] == "hamming"] == []
    plugins = {plugin["name"]: plugin["components"] for plugin in catalogue["plugins"]}
    components = {(c["kind"], c["name"]): c for c in plugins["hamming"]}
    assert set(components) == HAMMING_COMPONENTS
    assert components["dataset", "hamming-7"]["traits"] == ["hamming-7", "vector"]
    assert components["metric", "codewords"]["requires"] == ["hamming-7"]
    options = {(kind, name): {o["name"] for o in c["options"]} for (kind, name), c in components.items()}
    assert options["regularizer", "z-path-length"] == {"weight", "decay", "every"}
    assert options["regularizer", "zero-gp"] == {"gamma", "every"}
    assert options["dataset", "hamming-7"] == {"n", "flip", "seed"}
    assert options["logger", "csv"] == {"file"}


def test_cli_trains_on_hamming_7_with_both_lazy_penalties_and_the_csv_logger(hamming_run: tuple[Path, Any]) -> None:
    out, trained = hamming_run
    assert trained.returncode == 0, trained.stderr
    assert "plugin 'hamming'" not in trained.stderr
    header, rows = read_csv(out / "metrics.csv")
    assert [int(row["step"]) for row in rows] == [2, 4, 6, 8]
    assert header[0] == "step" and {"loss/d", "loss/g"} <= set(header)
    # Both penalties ran and were logged: the lazy D reg and G reg phases exist.
    assert any("zero-gp" in name for name in header) and any("z-path-length" in name for name in header), header
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    by_step = {record["step"]: record for record in logged if "loss/d" in record}
    for row in rows:  # the csv holds what metrics.jsonl holds, every digit
        assert float(row["loss/d"]) == by_step[int(row["step"])]["loss/d"]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"codewords/valid", "codewords/covered", "codewords/kl"}
    results_header, (final,) = read_csv(out / "results.csv")
    assert results_header == ["step", *sorted(results)] and final["step"] == "8"
    assert {name: float(final[name]) for name in results} == results
    assert png_title(out / "samples.png") == HAMMING_MARKER  # drawn by the dataset's renderer
    config = json.loads((out / "config.json").read_text())
    assert [r["name"] for r in config["regularizers"]] == ["z-path-length", "zero-gp"]
    assert [logger["name"] for logger in config["loggers"]] == ["csv"]


def test_codewords_command_prints_the_table_of_a_trained_run(
    hamming_site: Path, hamming_run: tuple[Path, Any], tmp_path: Path
) -> None:
    out, trained = hamming_run
    assert trained.returncode == 0, trained.stderr
    shown = run("-m", "ganforge_core", "codewords", out, "--n", "500", "--seed", "1", python_path=hamming_site)
    assert shown.returncode == 0, shown.stderr
    table = CODEWORD_ROW.findall(shown.stdout)
    assert [int(index) for index, *_ in table] == list(range(16))
    assert len({word for _, word, *_ in table}) == 16
    none = int(re.search(r"^\s+no codeword\s+(\d+)\s", shown.stdout, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert sum(int(count) for _, _, count, _ in table) + none == 500
    assert f"valid: {(500 - none) / 500:.4f} ({500 - none} of 500 samples)" in shown.stdout
    # The same samples as `ganforge sample --seed 1`, counted here by their parity checks.
    drawn = tmp_path / "drawn.pt"
    sampled = run("-m", "ganforge_core", "sample", out, "--n", "500", "--seed", "1", "--out", drawn, python_path=hamming_site)
    assert sampled.returncode == 0, sampled.stderr
    import torch

    bits = (torch.load(drawn) > 0).long()
    checks = torch.tensor([[1, 1, 0, 1, 1, 0, 0], [1, 0, 1, 1, 0, 1, 0], [0, 1, 1, 1, 0, 0, 1]])
    words = Counter("".join(map(str, row)) for row in bits[((bits @ checks.T) % 2 == 0).all(1)].tolist())
    assert {word: int(count) for _, word, count, _ in table if int(count)} == dict(words)
    assert none == 500 - sum(words.values())


def test_sample_eval_and_export_work_on_a_hamming_run(
    hamming_site: Path, hamming_run: tuple[Path, Any], tmp_path: Path
) -> None:
    out, trained = hamming_run
    assert trained.returncode == 0, trained.stderr
    picture = tmp_path / "x.png"
    sampled = run("-m", "ganforge_core", "sample", out, "--out", picture, python_path=hamming_site)
    assert sampled.returncode == 0, sampled.stderr
    assert png_title(picture) == HAMMING_MARKER
    evaluated = run("-m", "ganforge_core", "eval", out, "--json", python_path=hamming_site)
    assert evaluated.returncode == 0, evaluated.stderr
    values = json.loads(evaluated.stdout)
    assert set(values) == {"codewords/valid", "codewords/covered", "codewords/kl"}
    assert 0 <= values["codewords/valid"] <= 1 and values["codewords/covered"] in range(17)
    exported = run("-m", "ganforge_core", "export", out, "--out", tmp_path / "export", python_path=hamming_site)
    assert exported.returncode == 0, exported.stderr
    assert json.loads((tmp_path / "export" / "config.json").read_text())["generator"]["name"] == "mlp"
    assert (tmp_path / "export" / "model.safetensors").stat().st_size > 0


def test_codewords_command_refuses_bad_input_in_one_line(hamming_site: Path, tmp_path: Path) -> None:
    missing = run("-m", "ganforge_core", "codewords", tmp_path / "nowhere", python_path=hamming_site)
    assert (missing.returncode, missing.stderr) == (2, f"error: no run directory or checkpoint at {tmp_path / 'nowhere'}\n")
    ring = tmp_path / "ring"
    trained = run(
        "-m", "ganforge_core", "run", "--gen", "mlp", "--data", "ring-8:n=256", "--steps", "1", "--batch-size", "8",
        "--device", "cpu", "--out", ring, python_path=hamming_site,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    refused = run("-m", "ganforge_core", "codewords", ring, python_path=hamming_site)
    assert refused.returncode == 2
    assert refused.stderr == f"error: ganforge codewords needs a run trained on hamming-7; {ring} trained on 'ring-8'\n"


def test_the_hamming_plugin_own_tests_pass_against_the_installed_plugin(hamming_site: Path) -> None:
    tested = run("-m", "pytest", "-v", "-p", "no:cacheprovider", HAMMING_SOURCE / "tests", python_path=hamming_site)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    outcomes = dict(re.findall(r"::(test_\w+)(?:\[.*?\])? (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", tested.stdout))
    assert set(outcomes.values()) == {"PASSED"}, tested.stdout
    assert {
        "test_component_meets_the_ganforge_contract",
        "test_d_and_g_phases_stay_isolated",
        "test_trains_end_to_end_and_resumes_exactly",
        "test_the_16_codewords_are_the_hamming_7_4_code",
        "test_zero_gp_on_a_linear_critic_is_gamma_half_the_squared_norm_of_w",
        "test_path_length_on_a_linear_generator_against_its_jacobian",
        "test_csv_logger_widens_its_header_and_writes_the_results",
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
