"""Shipped presets: each is a valid run, ``--preset`` starts from one and the usual sources override it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ganforge_core import RunConfig, get_registry, presets, resolve
from ganforge_core.cli import app

PRESETS = presets.names()


def test_the_quality_presets_ship() -> None:
    assert {"ring-8", "grid-25", "mnist-5k"} <= set(PRESETS)


# The flags of the mnist-5k run measured in docs/benchmarks.md.
MNIST_5K_FLAGS = ("--data mnist-5k --gen dcgan --loss non-saturating --reg ema:decay=0.999 --reg r1:gamma=5,every=4 "
                  "--sched linear-decay --lr-g 5e-4 --lr-d 5e-4 --betas 0.5,0.99 --steps 10000")  # fmt: skip


def test_the_mnist_5k_preset_is_the_measured_run() -> None:
    shown = {}
    for args in (["--preset", "mnist-5k"], MNIST_5K_FLAGS.split()):
        result = CliRunner().invoke(app, ["config", "show", *args, "--json"])
        assert result.exit_code == 0, result.output
        shown[args[0]] = json.loads(result.stdout)
    assert shown["--preset"] == shown["--data"]
    assert shown["--preset"]["discriminator"] == {"name": "dcgan", "options": {"width": 64, "init": "dcgan", "norm": "layer"}}
    assert MNIST_5K_FLAGS in (Path(__file__).parents[1] / "docs" / "benchmarks.md").read_text()


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_a_valid_run_that_says_what_it_is(name: str) -> None:
    fields = presets.load(name)
    assert set(fields) <= set(RunConfig.model_fields), "a preset holds RunConfig fields only"
    plan = resolve(RunConfig.model_validate(fields), get_registry())
    assert plan.config.dataset.name == fields["dataset"]
    assert presets.summary(name) and len(presets.summary(name)) < 160
    # The file is TOML a user can copy as a --config file.
    assert tomllib.loads(presets.path_of(name).read_text()) == fields


@pytest.mark.parametrize("name", PRESETS)
def test_config_show_with_a_preset_equals_the_preset_resolved(name: str) -> None:
    result = CliRunner().invoke(app, ["config", "show", "--preset", name, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    expected = resolve(RunConfig.model_validate(presets.load(name)), get_registry()).config
    assert shown == json.loads(expected.model_dump_json())


def test_config_file_and_flags_override_a_preset(tmp_path: Path) -> None:
    config = tmp_path / "over.toml"
    config.write_text('steps = 7\nbatch_size = 50\n[dataset]\nname = "grid-25"\n')
    result = CliRunner().invoke(
        app, ["config", "show", "--preset", "ring-8", "--config", str(config), "--batch-size", "20", "--json"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["steps"], shown["batch_size"], shown["dataset"]["name"]) == (7, 20, "grid-25")
    assert shown["generator"]["options"]["cells"] == presets.load("ring-8")["generator"]["options"]["cells"]


def test_run_with_a_preset_trains_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--preset", "ring-8", "--steps", "3", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["generator"]["options"]["cells"] == presets.load("ring-8")["generator"]["options"]["cells"]
    assert [r["name"] for r in saved["regularizers"]] == ["ema"]
    assert torch.isfinite(torch.tensor(json.loads((out / "results.json").read_text())["mixture-modes/hq"]))


@pytest.mark.parametrize("command", [["run"], ["config", "show"]])
def test_an_unknown_preset_is_one_line_naming_the_valid_ones(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--preset", "ring-9"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown preset 'ring-9'") and "ring-8" in lines[0]


def test_resume_refuses_a_preset(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path), "--preset", "ring-8"])
    assert result.exit_code == 2 and "--preset" in result.output
