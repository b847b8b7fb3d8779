"""A whole run: built as ``ganforge run`` builds it, or trained end to end and resumed."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ganforge_core.config import RunConfig, resolve
from ganforge_core.errors import ConfigError
from ganforge_core.registry import Registry
from ganforge_core.testing.objects import _check, _fail, _finite, _plugins, small_options

if TYPE_CHECKING:
    from ganforge_core.plugins import Plugins
    from ganforge_core.run import Run
    from ganforge_core.session import RunResult


def _small_config(config: RunConfig, registry: Registry) -> RunConfig:
    """``config`` with :data:`SMALL_VALUES` under every component's own options."""
    data = config.model_dump()

    def shrink(kind: str, choice: dict[str, Any] | None) -> dict[str, Any] | None:
        if choice is None:
            return None
        try:
            component = registry.get(kind, choice["name"])  # type: ignore[arg-type]
        except ConfigError:
            return choice  # resolve reports the unknown name
        return {"name": choice["name"], "options": {**small_options(component), **choice["options"]}}

    if data["discriminator"] is None and data["generator"]["name"] in registry.names("discriminator"):
        data["discriminator"] = {"name": data["generator"]["name"], "options": {}}
    for kind, key in (("generator", "generator"), ("discriminator", "discriminator"), ("loss", "loss")):
        data[key] = shrink(kind, data[key])
    data["scheduler"] = shrink("scheduler", data["scheduler"])
    data["dataset"] = shrink("dataset", data["dataset"])
    data["regularizers"] = [shrink("regularizer", r) for r in data["regularizers"]]
    if data["metrics"] is not None:
        data["metrics"] = [shrink("metric", m) for m in data["metrics"]]
    return RunConfig.model_validate(data)


def _config(
    config: RunConfig | Mapping[str, Any] | None, fields: Mapping[str, Any], defaults: Mapping[str, Any]
) -> RunConfig:
    base = config.model_dump(exclude_unset=True) if isinstance(config, RunConfig) else dict(config or {})
    return RunConfig.model_validate({**defaults, **base, **fields})


def build_run(config: RunConfig, *, plugins: Plugins | None = None, run_dir: Path | None = None) -> Run:
    """The run's objects built exactly as ``ganforge run`` builds them: dataset, networks, regularizers, engine.

    Nothing is written: ``run_dir`` is only recorded. Raises ConfigError for a combination ganforge refuses.
    """
    from ganforge_core.run import Run

    plugins = _plugins(plugins)
    plan = resolve(config, plugins.registry)
    return Run(plan, plugins, run_dir or Path(tempfile.gettempdir()) / "ganforge-testing-never-written")


def assert_identical(before: Any, after: Any, where: str = "") -> None:
    """Bit-identical tensors (NaN equal to NaN) inside nested dicts, lists and tuples."""
    if isinstance(before, Tensor):
        _check(isinstance(after, Tensor), f"{where}: a tensor became {after!r}")
        try:
            torch.testing.assert_close(after, before, rtol=0, atol=0, equal_nan=True)
        except AssertionError as exc:
            raise _fail(f"{where} changed: {exc}") from None
    elif isinstance(before, dict):
        _check(isinstance(after, dict) and set(before) == set(after), lambda: f"{where}: keys changed")
        for key in before:
            assert_identical(before[key], after[key], f"{where}.{key}")
    elif isinstance(before, list | tuple):
        _check(isinstance(after, list | tuple) and len(before) == len(after), f"{where}: length changed")
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            assert_identical(b, a, f"{where}[{i}]")
    else:
        _check(before == after, f"{where}: {before!r} -> {after!r}")


_RUN_DEFAULTS: Mapping[str, Any] = {"steps": 4, "batch_size": 8, "device": "cpu"}


def smoke_train(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    out: Path,
    small: bool = True,
    check_resume: bool = True,
    plugins: Plugins | None = None,
    **fields: Any,
) -> RunResult:
    """Train a few steps end to end on CPU into ``out/run`` and check what the run wrote; returns its result.

    Checks the run directory (configuration, checkpoint, samples, ``metrics.jsonl``
    with finite statistics, finite final metrics), reloads the run from its
    checkpoint and draws samples of the data's shape. With ``check_resume``, also
    trains half the steps into ``out/resumed``, resumes it to the end and checks
    that it reaches bit-identical weights, as ganforge promises on the CPU.
    """
    from ganforge_core import checkpoint as ckpt
    from ganforge_core.session import train
    from ganforge_core.trained import load_trained

    plugins = _plugins(plugins)
    defaults = {**_RUN_DEFAULTS, "log_every": 1, "sample_every": 0, "checkpoint_every": 0}
    run_config = _config(config, fields, defaults)
    if small:
        run_config = _small_config(run_config, plugins.registry)
    out = Path(out)
    steps = run_config.steps

    result = train(run_config.model_copy(update={"out": out / "run"}), plugins=plugins, quiet=True)
    run_dir = result.run_dir
    _check(result.step == steps, f"the run stopped at step {result.step}, not {steps}")
    for name in ("config.json", "config.toml", "metrics.jsonl"):
        _check((run_dir / name).is_file(), f"the run wrote no {name}")
    _check(result.checkpoint.is_file(), f"no checkpoint at {result.checkpoint}")
    _check(result.samples.is_file() and result.samples.stat().st_size > 0, f"no samples at {result.samples}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    _check(records, "metrics.jsonl is empty")
    for record in records:
        bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
        _check(not bad, f"metrics.jsonl at step {record.get('step')}: non-finite {bad}")
    bad_results = {k: v for k, v in result.results.items() if not (isinstance(v, float) and math.isfinite(v))}
    _check(not bad_results, f"non-finite final metrics: {bad_results}")

    reloaded = load_trained(run_dir, plugins, device="cpu")
    samples = reloaded.draw(4, seed=0)
    _check(
        list(samples.shape) == [4, *reloaded.data_shape] and _finite(samples),
        f"samples of the reloaded run: shape {list(samples.shape)}, expected {[4, *reloaded.data_shape]}",
    )

    if check_resume and steps >= 2:
        resumed_dir = out / "resumed"
        train(run_config.model_copy(update={"out": resumed_dir, "steps": steps // 2}), plugins=plugins, quiet=True)
        train(None, resume=resumed_dir, overrides={"steps": steps}, plugins=plugins, quiet=True)
        straight = ckpt.load_safe(result.checkpoint)
        resumed = ckpt.load_safe(ckpt.checkpoint_path(resumed_dir, steps))
        for key in ("generator", "discriminator", "regularizers", "opt_g", "opt_d"):
            assert_identical(straight[key], resumed[key], f"resumed run: {key}")
    return result
