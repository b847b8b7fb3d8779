"""The scripts in benchmarks/ run end to end on the CPU: speed.py reports every implementation,
digit_metrics_calibration.py scores its man-made sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speed.py"
QUICK_CASES = {"mlp2d-b100", "mnist28-bce-b64"}
IMPLS = {"classic", "tuned", "ganforge"}


def test_quick_benchmark_reports_every_implementation(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    # One thread: on a small shared CI machine, torch's threads fight over the cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [
        sys.executable, str(SCRIPT), "--device", "cpu", "--quick",
        "--steps", "2", "--warmup", "1", "--repeats", "1", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    assert report["errors"] == {}
    assert {record["case"] for record in report["cases"]} == QUICK_CASES
    for record in report["cases"]:
        assert set(record["results"]) == IMPLS, record["case"]
        for impl, result in record["results"].items():
            assert result["img_per_s"] > 0, (record["case"], impl)
            assert result["peak_mib"] is None, (record["case"], impl)  # CPU: no peak memory
        assert record["ratios"]["ganforge/classic"] > 0
        assert record["ratios"]["ganforge/tuned"] > 0
    flat = {(row["case"], row["impl"]) for row in report["results"]}
    assert flat == {(case, impl) for case in QUICK_CASES for impl in IMPLS}
    for name in IMPLS:  # the table names every implementation
        assert name in done.stdout


def test_digit_metric_calibration_puts_a_one_pixel_shift_far_above_the_floor(tmp_path: Path) -> None:
    """The ruler in docs/benchmarks.md: real digits score at their floor, the same digits shifted
    by one pixel several times above it (in the subprocess, the suite's private classifier cache)."""
    out = tmp_path / "calibration.json"
    script = ROOT / "benchmarks" / "digit_metrics_calibration.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, str(script), "--sets", "real digits,shifted 1 px right", "--json", str(out)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["set"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"real digits", "shifted 1 px right"}
    real, shifted = rows["real digits"], rows["shifted 1 px right"]
    assert real["classifier-fid/fid"] < 1.5 * real["classifier-fid/real-floor"]
    assert shifted["classifier-fid/fid"] > 3 * shifted["classifier-fid/real-floor"]
    assert real["digit-classes/classes"] == 10 and real["digit-classes/kl"] < 0.01
    # Digits the classifier never trained on: unchanged they score their floor exactly; shifted, twice it.
    assert real["held-out/heldout-fid"] == pytest.approx(real["held-out/heldout-floor"], rel=1e-6)
    assert shifted["held-out/heldout-fid"] > 1.5 * shifted["held-out/heldout-floor"]
    assert "| shifted 1 px right | 10 |" in done.stdout

    bad = subprocess.run([sys.executable, str(script), "--sets", "upside down"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown set 'upside down'; valid: real digits" in bad.stderr
