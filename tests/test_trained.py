"""A trained generator without its run: ``ganforge_core.trained``.

``ganforge sample``, ``export`` and ``eval`` rebuild only what they need from a
checkpoint: no discriminator, no optimizer, no engine, and (but for ``eval``,
whose metrics compare against the real data) no dataset. Spies on every
component factory, on every optimizer and on the engine count what is built;
what they draw must be exactly what the training run itself draws.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from ganforge_core import Dataset, RunConfig, hookimpl, load_trained, resolve
from ganforge_core.checkpoint import load_safe, save_atomic
from ganforge_core.cli import app
from ganforge_core.engine import Engine
from ganforge_core.export import WEIGHTS, standalone_generator
from ganforge_core.plugins import Plugins, get_plugins
from ganforge_core.registry import Component
from ganforge_core.run import Run, load_run

TINY = {
    "generator": "mlp:hidden=8,depth=1",
    "discriminator": "mlp:hidden=8,depth=1",
    "dataset": "ring-8:n=256",
    "steps": 3,
    "batch_size": 8,
    "device": "cpu",
    "sample_every": 0,
}
RUNS = {
    "ema": {**TINY, "regularizers": ["ema:decay=0.5"]},
    "cond-sn-ema": {
        **TINY,
        "dataset": "mnist-5k:size=16",
        "conditional": True,
        "regularizers": ["spectral-norm:generator=true", "ema:decay=0.5"],
    },
}


def trained_run(config: RunConfig, plugins: Plugins) -> Run:
    """A run trained as ``ganforge run`` trains it, its last checkpoint written; the Run itself is kept."""
    assert config.out is not None
    run = Run(resolve(config, plugins.registry), plugins, config.out)
    while run.step < config.steps:
        run.engine.step(run.step)
        run.step += 1
    run.save_checkpoint()
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("runs")
    return {name: trained_run(RunConfig(**fields, out=root / name), get_plugins()) for name, fields in RUNS.items()}


class Built:
    """What a command builds: every component factory called, every optimizer and engine made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.components: list[tuple[str, str]] = []
        self.optimizers: list[str] = []
        self.engines = 0
        build, optimizer_init, engine_init = Component.build, torch.optim.Optimizer.__init__, Engine.__post_init__

        def spy_build(component: Component, options: Any, ctx: Any) -> Any:
            self.components.append((component.kind, component.name))
            return build(component, options, ctx)

        def spy_optimizer(optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
            self.optimizers.append(type(optimizer).__name__)
            optimizer_init(optimizer, *args, **kwargs)

        def spy_engine(engine: Engine) -> None:
            self.engines += 1
            engine_init(engine)

        monkeypatch.setattr(Component, "build", spy_build)
        monkeypatch.setattr(torch.optim.Optimizer, "__init__", spy_optimizer)
        monkeypatch.setattr(Engine, "__post_init__", spy_engine)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.components]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[Built]:
    yield Built(monkeypatch)


def ok(*args: str | Path) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_a_checkpoint_records_the_data_sampling_needs(runs: dict[str, Run]) -> None:
    from ganforge_datasets.mixtures import ring_means

    state = load_safe(runs["ema"].save_checkpoint())
    data = state["data"]
    assert data["shape"] == [2] and data["num_classes"] == 8
    assert data["info"].keys() == {"means", "std"} and data["info"]["std"] == 0.01
    assert torch.equal(data["info"]["means"], ring_means())


@pytest.mark.parametrize("name", list(RUNS))
def test_sample_builds_only_the_generator_and_draws_what_the_training_run_draws(
    runs: dict[str, Run], built: Built, tmp_path: Path, name: str
) -> None:
    run = runs[name]
    ok("sample", run.run_dir, "--n", "50", "--seed", "4", "--device", "cpu", "--out", tmp_path / "s.pt")
    ok("sample", run.run_dir, "--n", "50", "--seed", "4", "--no-ema", "--out", tmp_path / "raw.pt")
    ok("sample", run.run_dir, "--interpolate", "5", "--n", "3", "--seed", "2", "--out", tmp_path / "i.pt")
    regularizers = [("regularizer", text.split(":")[0]) for text in RUNS[name]["regularizers"]]
    assert built.components == 3 * [*regularizers, ("generator", "mlp")]
    assert built.optimizers == [] and built.engines == 0
    assert torch.equal(torch.load(tmp_path / "s.pt"), run.draw(50, seed=4))
    assert torch.equal(torch.load(tmp_path / "raw.pt"), run.draw(50, seed=4, ema=False))
    assert not torch.equal(torch.load(tmp_path / "s.pt"), torch.load(tmp_path / "raw.pt")), "EMA differs from G"
    assert torch.equal(torch.load(tmp_path / "i.pt"), run.interpolate(3, 5, seed=2))


def test_a_label_draws_as_the_training_run_draws(runs: dict[str, Run], built: Built) -> None:
    run = runs["cond-sn-ema"]
    trained = load_trained(run.run_dir, device="cpu")
    assert "dataset" not in built.kinds() and built.optimizers == []
    assert trained.step == 3 and trained.data_shape == (1, 16, 16) and trained.num_classes == 10
    for ema in (True, False):
        assert torch.equal(trained.draw(20, seed=1, label=5, ema=ema), run.draw(20, seed=1, label=5, ema=ema))


def test_export_builds_only_the_generator(runs: dict[str, Run], built: Built, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    run = runs["ema"]
    ok("export", run.run_dir, "--out", tmp_path / "out")
    assert built.components == [("regularizer", "ema"), ("generator", "mlp")]
    assert built.optimizers == [] and built.engines == 0
    saved = load_file(str(tmp_path / "out" / WEIGHTS))
    expected, used_ema = standalone_generator(run)
    assert used_ema and saved.keys() == expected.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in expected.state_dict().items())


def test_eval_loads_the_dataset_once_and_scores_as_the_training_run(
    runs: dict[str, Run], built: Built
) -> None:
    run = runs["ema"]
    result = ok("eval", run.run_dir, "--json", "--device", "cpu")
    assert built.kinds().count("dataset") == 1 and "discriminator" not in built.kinds()
    assert built.optimizers == [] and built.engines == 0
    expected = run.evaluate()
    assert json.loads(result.output) == expected and set(expected) == {
        "mixture-modes/modes",
        "mixture-modes/hq",
        "mixture-modes/reverse-kl",
    }


class SampleMean:
    """A metric as sensitive to the latents drawn as can be: the mean of the samples."""

    @hookimpl
    def ganforge_register_metrics(self, register):
        class Mean:
            def compute(self, generate: Any, dataset: Dataset) -> dict[str, float]:
                return {"mean": float(generate(500).double().mean()), "data": len(dataset)}

        register("sample-mean", lambda options, ctx: Mean(), summary="for tests")


def test_evaluate_draws_the_latents_the_training_run_draws(tmp_path: Path) -> None:
    plugins = Plugins(extra=[("sample-mean", SampleMean())])
    run = trained_run(RunConfig(**RUNS["ema"], out=tmp_path / "run"), plugins)
    trained = load_trained(tmp_path / "run", plugins, device="cpu")
    assert trained.dataset is None, "no dataset until the evaluation needs it"
    scores = trained.evaluate(["sample-mean"])
    assert scores == run.evaluate(["sample-mean"]) and scores["sample-mean/data"] == 256
    assert trained.evaluate(["sample-mean"]) == scores, "an evaluation has its own RNG stream"


def test_a_checkpoint_without_data_builds_the_dataset_to_sample(
    runs: dict[str, Run], built: Built, tmp_path: Path
) -> None:
    run = runs["ema"]
    state = load_safe(run.save_checkpoint())
    del state["data"]  # as ganforge wrote checkpoints before it recorded the data
    save_atomic(state, tmp_path / "old.pt")
    ok("sample", tmp_path / "old.pt", "--n", "30", "--seed", "9", "--out", tmp_path / "s.pt")
    assert built.kinds().count("dataset") == 1 and built.optimizers == [] and built.engines == 0
    assert torch.equal(torch.load(tmp_path / "s.pt"), run.draw(30, seed=9))
    trained = load_trained(tmp_path / "old.pt", device="cpu")
    assert trained.num_classes == 8 and torch.equal(trained.data_info["means"], run.dataset.info["means"])
    trained.evaluate()
    assert built.kinds().count("dataset") == 2, "the dataset built to sample serves the evaluation too"


class PathInfo:
    """A dataset whose info holds an object that weights_only loading refuses (a Path)."""

    @hookimpl
    def ganforge_register_datasets(self, register):
        def build(options: Any, ctx: Any) -> Dataset:
            points = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
            return Dataset(samples=points, info={"root": Path("/data/points"), "means": None})

        register("path-info", build, summary="for tests")


def test_info_that_is_not_plain_data_is_left_out_and_the_dataset_built_instead(
    built: Built, tmp_path: Path
) -> None:
    plugins = Plugins(extra=[("path-info", PathInfo())])
    config = RunConfig(**{**TINY, "dataset": "path-info", "metrics": []}, out=tmp_path / "run")
    run = trained_run(config, plugins)
    state = load_safe(run.save_checkpoint())  # refused if it held the Path
    assert state["data"] == {"shape": [2], "num_classes": 0, "info": None}
    before = built.kinds().count("dataset")
    trained = load_trained(tmp_path / "run", plugins, device="cpu")
    assert built.kinds().count("dataset") == before + 1
    assert trained.data_info == {"root": Path("/data/points"), "means": None}
    assert torch.equal(trained.draw(10, seed=0), run.draw(10, seed=0))


def test_load_run_still_loads_the_whole_run_and_warns_with_the_replacement(runs: dict[str, Run]) -> None:
    run = runs["ema"]
    with pytest.warns(DeprecationWarning, match=r"use ganforge_core\.load_trained"):
        loaded = load_run(run.run_dir, get_plugins(), "cpu")
    assert isinstance(loaded, Run) and loaded.step == 3
    assert torch.equal(loaded.draw(5, seed=0), run.draw(5, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_trained(run.run_dir, device="cpu")  # the replacement itself does not warn
