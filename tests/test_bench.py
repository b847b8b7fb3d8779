"""``ganforge bench``: recipes are valid runs, the statistics are right, the command writes a run per seed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ganforge_bench import bench
from ganforge_core import RunConfig, get_registry, resolve
from ganforge_core.cli import app
from ganforge_core.errors import ConfigError

PACGAN_RECIPES = sorted(set(bench.MIXTURE_RECIPES) - {bench.PRESET})
MIXTURES = ("ring-8", "grid-25")


def test_every_benchmark_is_a_registered_dataset_with_its_metric() -> None:
    registry = get_registry()
    assert bench.DATASETS == ("ring-8", "grid-25", "stacked-mnist")
    for name, spec in bench.BENCHMARKS.items():
        assert spec.dataset == name and registry.get("dataset", name) and registry.get("metric", spec.metric)
        for anchor in spec.anchors.values():
            assert set(anchor) == {c.key for c in spec.columns}


@pytest.mark.parametrize("recipe", PACGAN_RECIPES)
@pytest.mark.parametrize("dataset", MIXTURES)
def test_every_pacgan_recipe_resolves_to_the_pacgan_setup(recipe: str, dataset: str, tmp_path: Path) -> None:
    plan = resolve(RunConfig.model_validate(bench.recipe_config(recipe, dataset, 0, 10, tmp_path)), get_registry())
    config = plan.config
    assert (config.generator.name, config.discriminator.name, config.loss.name) == ("mlp", "mlp", "non-saturating")
    assert (config.lr_g, config.lr_d, tuple(config.betas), config.batch_size) == (1e-4, 1e-4, (0.8, 0.999), 100)
    assert config.generator.options["hidden"] == 400 and config.generator.options["depth"] == 4
    assert config.discriminator.options["hidden"] == 200 and config.discriminator.options["pieces"] == 5
    assert [m.name for m in config.metrics] == ["mixture-modes"]
    packing = [r.options["m"] for r in config.regularizers if r.name == "packing"]
    assert packing == ({"gan": [], "pacgan2": [2], "pacgan4": [4]}[recipe])
    assert bench.recipe_config(recipe, dataset, 0, None, tmp_path)["steps"] == 6000


@pytest.mark.parametrize("recipe", ["dcgan", "pacdcgan2"])
def test_stacked_mnist_recipes_are_dcgan_with_dcgans_optimiser(recipe: str, tmp_path: Path) -> None:
    fields = bench.recipe_config(recipe, "stacked-mnist", 1, None, tmp_path)
    config = resolve(RunConfig.model_validate(fields), get_registry()).config
    assert (config.generator.name, config.discriminator.name, config.loss.name) == ("dcgan", "dcgan", "non-saturating")
    assert (config.lr_g, config.lr_d, tuple(config.betas), config.batch_size) == (2e-4, 2e-4, (0.5, 0.999), 64)
    assert [m.name for m in config.metrics] == ["stacked-modes"] and config.metrics[0].options["samples"] == 26_000
    packing = [r.options["m"] for r in config.regularizers if r.name == "packing"]
    assert packing == ([2] if recipe == "pacdcgan2" else [])
    assert (config.dataset.name, config.device, config.steps) == ("stacked-mnist", "auto", 10_000)


def test_the_default_recipe_is_the_preset_where_one_is_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from ganforge_core import presets

    assert bench.default_recipe("ring-8") == bench.PRESET and bench.recipes("grid-25")[0] == bench.PRESET
    others = [n for n in presets.names() if n != "stacked-mnist"]
    monkeypatch.setattr(presets, "names", lambda: others)
    assert bench.recipes("stacked-mnist") == ["pacdcgan2", "dcgan"]
    assert bench.default_recipe("stacked-mnist") == "pacdcgan2"
    with pytest.raises(ConfigError, match="unknown recipe 'preset' for stacked-mnist; valid: pacdcgan2, dcgan"):
        bench.recipe_fields(bench.PRESET, "stacked-mnist")
    monkeypatch.setattr(presets, "names", lambda: [*others, "stacked-mnist"])  # once one is shipped
    assert bench.recipes("stacked-mnist") == [bench.PRESET, "pacdcgan2", "dcgan"]
    assert bench.default_recipe("stacked-mnist") == bench.PRESET


@pytest.mark.parametrize("dataset", MIXTURES)
def test_the_preset_recipe_is_the_shipped_preset_of_the_dataset(dataset: str, tmp_path: Path) -> None:
    from ganforge_core import presets

    fields = bench.recipe_config(bench.PRESET, dataset, 3, None, tmp_path / "run")
    preset = presets.load(dataset)
    assert {k: fields[k] for k in preset if k != "dataset"} == {k: v for k, v in preset.items() if k != "dataset"}
    assert (fields["dataset"], fields["seed"], fields["steps"], fields["metrics"]) == (
        dataset, 3, preset["steps"], ["mixture-modes"]
    )
    assert bench.recipe_config(bench.PRESET, dataset, 0, 7, tmp_path)["steps"] == 7
    plan = resolve(RunConfig.model_validate(fields), get_registry())
    assert plan.config.dataset.name == dataset and plan.config.device == "cpu"


def test_mean_and_standard_error() -> None:
    assert bench.mean_and_error([1.0, 2.0, 3.0]) == (2.0, pytest.approx(1 / math.sqrt(3)))
    assert bench.mean_and_error([5.0]) == (5.0, None)


def test_a_seed_trains_with_the_threads_it_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import types

    import torch

    import ganforge_core

    seen = []

    def train(fields: dict, quiet: bool) -> types.SimpleNamespace:
        seen.append(torch.get_num_threads())
        return types.SimpleNamespace(results={"mixture-modes/modes": 8.0})

    monkeypatch.setattr(ganforge_core, "train", train)
    before = torch.get_num_threads()
    row = bench.train_one({"seed": 4, "out": str(tmp_path)}, threads=before + 1)
    assert seen == [before + 1] and torch.get_num_threads() == before
    assert row["seed"] == 4 and row["mixture-modes/modes"] == 8.0
    assert json.loads((tmp_path / bench.RECORD).read_text())["row"] == row


def test_table_puts_our_row_beside_the_published_ones() -> None:
    report = {"dataset": "grid-25", "recipe": "gan", "seeds": 2, "steps": 9,
              "mean": {"modes": 20.0, "hq": 90.0, "reverse-kl": 0.5},
              "stderr": {"modes": 1.0, "hq": 2.0, "reverse-kl": 0.1}}  # fmt: skip
    text = bench.table(report)
    assert "| ganforge gan (2 seeds, 9 steps)" in text and "20.0±1.0" in text and "0.500±0.100" in text
    assert "PacGAN paper: PacGAN4" in text and "24.8±0.2" in text
    assert "VEEGAN paper: VEEGAN" in text and "40.0" in text
    header = text.splitlines()[0]
    assert header.split("|")[2:5] == [" modes ", " HQ % ", " rev-KL "]


def test_stacked_mnist_table_has_modes_and_kl_beside_pacgan_and_veegan() -> None:
    report = {"dataset": "stacked-mnist", "recipe": "pacdcgan2", "seeds": 3, "steps": 10,
              "mean": {"modes": 998.0, "kl": 0.0412}, "stderr": {"modes": 1.0, "kl": 0.002}}  # fmt: skip
    text = bench.table(report)
    assert text.splitlines()[0].split("|")[2:4] == [" modes ", " KL "]
    assert "| ganforge pacdcgan2 (3 seeds, 10 steps)" in text and "998.0±1.0 | 0.041±0.002" in text
    assert "PacGAN paper: PacDCGAN2" in text and "1000.0 | 0.06" in text and "78.9±6.5 | 4.50" in text
    assert "VEEGAN paper: VEEGAN" in text and "150.0 | 2.95" in text


def test_bench_command_trains_each_seed_into_its_run_directory(tmp_path: Path) -> None:
    args = ["bench", "ring-8", "--seeds", "2", "--steps", "3", "--recipe", "pacgan2", "--jobs", "1",
            "--runs-dir", str(tmp_path), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["seeds"] == 2 and report["recipe"] == "pacgan2" and len(report["per_seed"]) == 2
    for seed in range(2):
        run = tmp_path / "bench-ring-8-pacgan2" / f"seed-{seed}"
        assert json.loads((run / "results.json").read_text())["mixture-modes/modes"] == report["per_seed"][seed][
            "mixture-modes/modes"
        ]
    assert set(report["mean"]) == {"modes", "hq", "reverse-kl"} and 0 <= report["mean"]["hq"] <= 100
    assert "PacGAN paper: GAN" in report["anchors"]

    other = CliRunner().invoke(app, [*args[:4], "--steps", "5", *args[6:]])
    assert other.exit_code == 2 and "--fresh" in other.output and "Traceback" not in other.output
    assert "steps: 3 then, 5 now" in other.output
    table = CliRunner().invoke(app, [*args[:-1], "--fresh", "--seeds", "1"])
    assert table.exit_code == 0, table.output
    assert "| ganforge pacgan2 (1 seeds, 3 steps)" in table.output and "PacGAN paper: PacGAN2" in table.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["bench", "mnist-5k"], ["ring-8", "grid-25", "stacked-mnist"]),
        (["bench", "ring-8", "--recipe", "wgan"], ["preset", "gan", "pacgan4"]),
        (["bench", "stacked-mnist", "--recipe", "pacgan2"], ["stacked-mnist", "pacdcgan2", "dcgan"]),
    ],
)
def test_bench_refuses_bad_input_in_one_line(args: list[str], words: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and all(w in lines[0] for w in words)


def test_seeds_trained_in_parallel_workers_match_one_process(tmp_path: Path) -> None:
    """--jobs 2 spawns workers; each seed's run is the same run as in one process, bit for bit."""
    reports = {}
    for jobs in ("1", "2"):
        args = ["bench", "ring-8", "--seeds", "2", "--steps", "4", "--recipe", "gan", "--jobs", jobs,
                "--runs-dir", str(tmp_path / jobs), "--json"]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        reports[jobs] = json.loads(result.stdout)
    assert reports["2"]["jobs"] == 2 and [r["seed"] for r in reports["2"]["per_seed"]] == [0, 1]
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in reports["1"]["per_seed"]]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in reports["2"]["per_seed"]] == strip


def test_bench_reuses_finished_seeds_and_retrains_unfinished_ones(tmp_path: Path) -> None:
    """--seeds 3 after --seeds 2 trains seed 2 only; a seed without bench.json (interrupted) is trained again."""
    args = ["bench", "ring-8", "--steps", "3", "--recipe", "gan", "--jobs", "1", "--runs-dir", str(tmp_path), "--json"]
    first = json.loads(CliRunner().invoke(app, [*args, "--seeds", "2"]).stdout)
    root = tmp_path / "bench-ring-8-gan"
    stamps = {seed: (root / f"seed-{seed}" / "results.json").stat().st_mtime_ns for seed in range(2)}
    (root / "seed-1" / bench.RECORD).unlink()  # as if seed 1 had been interrupted

    result = CliRunner().invoke(app, [*args, "--seeds", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reused"] == [0] and [row["seed"] for row in report["per_seed"]] == [0, 1, 2]
    assert (root / "seed-0" / "results.json").stat().st_mtime_ns == stamps[0]
    assert (root / "seed-1" / "results.json").stat().st_mtime_ns != stamps[1]
    assert report["per_seed"][0] == first["per_seed"][0]
    assert report["per_seed"][1] == {**first["per_seed"][1], "seconds": report["per_seed"][1]["seconds"]}  # same run

    table = CliRunner().invoke(app, [*args[:-1], "--seeds", "3"])
    assert table.exit_code == 0 and "3 finished seeds reused" in table.output
    assert "seed 2: " in table.output and "(reused, " in table.output


def test_bench_stacked_mnist_counts_modes_on_26000_samples(tmp_path: Path) -> None:
    """Two steps of pacdcgan2: too few to learn digits, enough to check the protocol end to end."""
    args = ["bench", "stacked-mnist", "--seeds", "1", "--steps", "2", "--jobs", "1", "--runs-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["recipe"], report["metric"], report["steps"]) == ("pacdcgan2", "stacked-modes", 2)
    row = report["per_seed"][0]
    assert 1 <= row["stacked-modes/modes"] <= 1000 and row["stacked-modes/kl"] > 0
    assert report["mean"] == {"modes": row["stacked-modes/modes"], "kl": row["stacked-modes/kl"]}
    saved = json.loads((tmp_path / "bench-stacked-mnist-pacdcgan2" / "seed-0" / "config.json").read_text())
    assert saved["metrics"] == [{"name": "stacked-modes", "options": {"samples": 26000}}]
    table = CliRunner().invoke(app, args)  # the finished seed is reused
    assert table.exit_code == 0 and "| ganforge pacdcgan2 (1 seeds, 2 steps)" in table.output
    assert "PacGAN paper: PacDCGAN2" in table.output and "1 finished seeds reused" in table.output
