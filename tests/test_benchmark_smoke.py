"""benchmarks/speed.py runs end to end on the CPU and reports every implementation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
