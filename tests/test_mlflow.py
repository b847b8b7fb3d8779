"""--logger mlflow against a real local MLflow tracking store, read back through MLflow's own client.

The runs are real ``ganforge run`` processes (tiny MLPs on ring-8) logging to a
file store in the test's temporary directory: no server, no network. MLflow 3
refuses a file store unless ``MLFLOW_ALLOW_FILE_STORE=true`` (its opt-out), so the
subprocesses get that variable, as docs/tracking.md tells users to set it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ganforge_core.cli import app

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

GANFORGE = Path(sys.executable).with_name("ganforge")
TINY = ["--gen", "mlp:hidden=8,depth=1", "--disc", "mlp:hidden=8,depth=1", "--data", "ring-8:n=256"]
SHORT = ["--steps", "6", "--log-every", "2", "--sample-every", "3", "--checkpoint-every", "3", "--device", "cpu"]


def ganforge(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    return subprocess.run(
        [str(GANFORGE), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def expected_params(value: Any, prefix: str = "") -> dict[str, str]:
    """config.json as MLflow params: dotted keys, None left out, empty containers as JSON."""
    if isinstance(value, dict | list):
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        flat = {} if value else {prefix: json.dumps(value)}
        for key, item in pairs:
            flat.update(expected_params(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {} if value is None else {prefix: str(value)}


def logged_statistics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl's per-interval records as {name: [(step, value), ...]}."""
    history: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "event" not in record:
            for name, value in record.items():
                if name != "step":
                    history.setdefault(name, []).append((record["step"], value))
    return history


def history(client: MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowClient, Path, Any]]:
    """A 6-step run logged to a file store: the client reading it, the run directory, the MLflow run."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = (root / "store").as_uri()
    logger = f"mlflow:tracking_uri={uri},experiment=tiny"
    result = ganforge("run", *TINY, *SHORT, "-q", "--out", "tb", "--logger", logger, cwd=root)
    assert result.returncode == 0, result.stderr + result.stdout
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("tiny")
        assert experiment is not None
        (run,) = client.search_runs([experiment.experiment_id])
        yield client, root / "tb", run


def test_params_are_the_resolved_config(logged: tuple[MlflowClient, Path, Any]) -> None:
    _, run_dir, run = logged
    config = json.loads((run_dir / "config.json").read_text())
    assert run.data.params == expected_params(config)
    assert run.data.params["generator.options.hidden"] == "8" and run.data.params["betas.1"] == "0.999"
    assert run.data.params["regularizers"] == "[]" and "loss.options" in run.data.params
    assert run.data.tags["ganforge.run_dir"] == str(run_dir.resolve())
    assert run.info.run_name == "tb" and run.info.status == "FINISHED"
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == run.info.run_id


def test_metric_history_is_metrics_jsonl(logged: tuple[MlflowClient, Path, Any]) -> None:
    client, run_dir, run = logged
    statistics = logged_statistics(run_dir)
    assert {"loss/d", "loss/g", "d/real", "img/s", "lr/g"} <= set(statistics)
    for name, expected in statistics.items():
        assert history(client, run.info.run_id, name) == expected, name
    assert [step for step, _ in statistics["loss/d"]] == [2, 4, 6]
    results = json.loads((run_dir / "results.json").read_text())
    assert results and {f"eval/{k}": [(6, v)] for k, v in results.items()} == {
        f"eval/{k}": history(client, run.info.run_id, f"eval/{k}") for k in results
    }
    logged_names = set(run.data.metrics)
    assert logged_names == set(statistics) | {f"eval/{k}" for k in results}


def test_artifacts_are_the_sample_grids_and_the_final_files(
    logged: tuple[MlflowClient, Path, Any], tmp_path: Path
) -> None:
    client, run_dir, run = logged
    run_id = run.info.run_id
    assert [a.path for a in client.list_artifacts(run_id, "samples")] == [
        "samples/samples-00000003.png",
        "samples/samples-00000006.png",
        "samples/samples.png",
    ]
    top = {a.path for a in client.list_artifacts(run_id) if not a.is_dir}
    assert top == {"results.json", "metrics.jsonl", "config.json", "config.toml", "losses.png"}
    for name in ("samples/samples.png", "results.json", "metrics.jsonl"):
        local = Path(client.download_artifacts(run_id, name, str(tmp_path)))
        expected = (run_dir / Path(name).name).read_bytes()
        if name == "metrics.jsonl":
            # Loggers end before the run records itself done (a crash in them leaves it unfinished
            # for --resume), so the uploaded log is the file without its last line, the done event.
            *kept, done = expected.splitlines(keepends=True)
            assert json.loads(done) == {"step": 6, "event": "done"}
            expected = b"".join(kept)
        assert local.read_bytes() == expected, name


def test_resume_continues_the_same_mlflow_run(logged: tuple[MlflowClient, Path, Any]) -> None:
    client, run_dir, run = logged
    result = ganforge("run", "--resume", run_dir, "--steps", "10", "-q", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr + result.stdout
    (again,) = client.search_runs([run.info.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert again.data.tags["ganforge.resumed_at"] == "6"
    assert history(client, run.info.run_id, "loss/d") == logged_statistics(run_dir)["loss/d"]
    assert [step for step, _ in history(client, run.info.run_id, "loss/d")] == [2, 4, 6, 8, 10]
    assert again.data.params["steps"] == "6", "params are immutable: the first run's config stays"


def test_an_unusable_tracking_store_is_one_error_line(tmp_path: Path) -> None:
    result = ganforge("run", *TINY, *SHORT, "-q", "--out", "r", "--logger", "mlflow:tracking_uri=nosuch://x", cwd=tmp_path)
    assert result.returncode == 2, result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: logger 'mlflow': cannot use the tracking store nosuch://x: "), lines[0]


def test_missing_mlflow_is_one_line_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    result = CliRunner().invoke(app, ["run", *TINY, *SHORT, "--logger", "mlflow", "--out", "r"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: logger 'mlflow' needs the 'mlflow' package, which is not installed: pip install mlflow"
    ]
    assert not (tmp_path / "r").exists(), "checked before the run directory is made"


def test_the_logger_meets_the_logger_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganforge_core.testing import check_component

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "store").as_uri()
    check_component("logger", "mlflow", options={"tracking_uri": uri, "experiment": "contract"})
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("contract")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert history(client, run.info.run_id, "loss/d") == [(1, 1.0), (2, 0.9)]
    assert history(client, run.info.run_id, "eval/metric/value") == [(2, 0.25)]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "samples")] == ["samples/samples-00000001.png"]
