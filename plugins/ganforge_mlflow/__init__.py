"""MLflow tracking: ``ganforge run --logger mlflow``.

A built-in plugin (entry point ``mlflow``) that registers one logger component.
Through ``mlflow.tracking.MlflowClient`` (no global active run: the fluent API's
state is left alone) it records, in one MLflow run of the experiment
``experiment`` (made when missing):

* the resolved configuration as params, flattened with dotted keys
  (``generator.options.hidden``, ``metrics.0.name``; ``None`` values left out,
  an empty list or table as ``[]`` / ``{}``), and the ganforge run directory as
  the tag ``ganforge.run_dir``;
* every logged statistic (``loss/d``, ``d/real``, ``img/s``, ...) as a metric at
  its step;
* every sample picture the run writes as an artifact under ``samples/``;
* at the end, the final metric values as metrics ``eval/NAME`` and the run's
  ``results.json``, ``metrics.jsonl``, ``config.json``, ``config.toml`` and
  ``losses.png`` (those that exist) as artifacts.

The MLflow run's id is kept in ``RUN_DIR/mlflow.json``: ``ganforge run
--resume`` continues that MLflow run (params are immutable in MLflow, so the
resumed config is in the ``config.*`` artifacts, and the tag
``ganforge.resumed_at`` says at which step). The component ``needs`` the
``mlflow`` package (``mlflow-skinny`` suffices: ``pip install 'ganforge[mlflow]'``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ganforge_core import ConfigError, Logger, Options, Register, RunContext, hookimpl

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

RUN_FILE = "mlflow.json"  # in the run directory: which MLflow run a resume continues
FINAL_ARTIFACTS = ("results.json", "metrics.jsonl", "config.json", "config.toml", "losses.png")
BATCH = 100  # MLflow's limit of params per log_batch call
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # the stores MLflow reaches through SQLAlchemy


class MlflowOptions(Options):
    tracking_uri: str | None = Field(
        None,
        min_length=1,
        description="tracking store (http://..., file:///..., sqlite:///...); default: MLflow's own (MLFLOW_TRACKING_URI)",
    )
    experiment: str = Field("ganforge", min_length=1, description="experiment name, created when missing")
    run_name: str | None = Field(None, min_length=1, description="MLflow run name; default: the run directory's name")


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted.key, text)`` for every leaf of a JSON-like value; ``None`` leaves are left out."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None:
        if value is not None:
            yield prefix, str(value)
        return
    if not value:
        yield prefix, json.dumps(value)
    for key, item in items:
        yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))


class MlflowLogger(Logger):
    def __init__(self, options: MlflowOptions, run: RunContext) -> None:
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException

        self.run_dir = Path(run.run_dir)
        self.ended = False
        uri = options.tracking_uri
        try:
            self.client = _client(uri)
            previous = self._previous_run(run.start_step)
            if previous:
                self.run_id = previous
                self.client.update_run(self.run_id, status="RUNNING")
                self.client.set_tag(self.run_id, "ganforge.resumed_at", str(run.start_step))
                return
            self.run_id = self._new_run(options)
        except (MlflowException, OSError, ImportError) as exc:
            raise ConfigError(f"logger 'mlflow': cannot use the tracking store {_why(uri, exc)}") from None
        (self.run_dir / RUN_FILE).write_text(json.dumps({"tracking_uri": uri, "run_id": self.run_id}) + "\n")
        params = [Param(key, text) for key, text in flatten(run.config.model_dump(mode="json"))]
        for start in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + BATCH])
        self.client.log_batch(self.run_id, tags=[RunTag("ganforge.run_dir", str(self.run_dir.resolve()))])

    def _previous_run(self, start_step: int) -> str | None:
        """The MLflow run a resumed ganforge run logged to, if it still exists in this store."""
        record = self.run_dir / RUN_FILE
        if not start_step or not record.exists():
            return None
        run_id = json.loads(record.read_text())["run_id"]
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:  # another store, or the run was deleted: start a new one
            return None
        return str(run_id)

    def _new_run(self, options: MlflowOptions) -> str:
        found = self.client.get_experiment_by_name(options.experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(options.experiment)
        created = self.client.create_run(experiment_id, run_name=options.run_name or self.run_dir.name)
        return str(created.info.run_id)

    def log(self, step: int, stats: Mapping[str, float]) -> None:
        self._metrics(step, stats)

    def samples(self, step: int, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="samples")

    def end(self, step: int, results: Mapping[str, float]) -> None:
        self._metrics(step, {f"eval/{name}": value for name, value in results.items()})
        for name in FINAL_ARTIFACTS:
            if (self.run_dir / name).exists():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        self.ended = True

    def close(self) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if self.ended else "FAILED")

    def _metrics(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step) for name, value in values.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)


def _client(uri: str | None) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    client.search_experiments(max_results=1)  # opens the store now: a bad URI fails before training
    return client


def _why(uri: str | None, exc: BaseException) -> str:
    """The store's URI (MLflow's default resolved) and why it cannot be used, on one line."""
    import importlib.util

    from mlflow.tracking import get_tracking_uri

    store = uri or f"{get_tracking_uri()} (MLflow's default; choose one with tracking_uri=...)"
    if store.split(":", 1)[0].split("+")[0] in DATABASES and importlib.util.find_spec("sqlalchemy") is None:
        return (
            f"{store}: a database store needs the full 'mlflow' package (pip install mlflow); "
            "mlflow-skinny logs to a tracking server (http://...) or a file store (file:///...)"
        )
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{store}: {str(text).strip().splitlines()[0]}"


def _build(options: MlflowOptions, run: RunContext) -> MlflowLogger:
    return MlflowLogger(options, run)


@hookimpl
def ganforge_register_loggers(register: Register) -> None:
    register(
        "mlflow",
        _build,
        options=MlflowOptions,
        summary="MLflow tracking: config as params, statistics as metrics, sample pictures and results as artifacts",
        needs=("mlflow",),
        paper="https://mlflow.org/docs/latest/ml/tracking/",
    )
