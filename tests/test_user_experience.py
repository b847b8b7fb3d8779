"""What users see: config.toml and `config show`, losses.png, TensorBoard, docs/cli.md, the quickstart.

Commands run in-process through typer's CliRunner (each test changes into its
own temporary directory), with tiny networks on 2D data so the file stays quick.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from ganforge_core import RunConfig, get_registry, hookimpl, resolve
from ganforge_core import checkpoint as ckpt
from ganforge_core.cli import app
from ganforge_core.clidocs import cli_reference
from ganforge_core.commands import training
from ganforge_core.reporting import plot_losses, toml_text

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--gen", "mlp:hidden=8,depth=1", "--disc", "mlp:hidden=8,depth=1", "--data", "ring-8:n=256"]
SHORT = ["--steps", "6", "--log-every", "2", "--sample-every", "3", "--checkpoint-every", "3", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"


def ganforge(*args: str | Path) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result


def ok(*args: str | Path) -> Any:
    result = ganforge(*args)
    assert result.exit_code == 0, result.output
    return result


def without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt.list_checkpoints(run_dir)[-1], weights_only=True)
    return {f"{net}.{k}": v for net in ("generator", "discriminator") for k, v in state[net].items()}


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANFORGE_PLUGINS", raising=False)
    return tmp_path


# -- config.toml (written by tomli-w) ------------------------------------------

keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
)
values = st.recursive(
    st.one_of(scalars, st.none()),
    lambda inner: st.one_of(
        st.lists(scalars, max_size=3),
        st.dictionaries(keys, inner, max_size=3),
        st.lists(st.dictionaries(keys, inner, max_size=3), min_size=1, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_toml_text_round_trips_through_tomllib_without_its_nulls(data: dict[str, Any]) -> None:
    assert tomllib.loads(toml_text(data)) == without_none(data)


@pytest.mark.parametrize(
    "config",
    [
        RunConfig(),
        RunConfig(generator="mlp", dataset="ring-8", regularizers=["instance-noise:sigma=0.2"], loss="wgan-gp"),
        RunConfig(regularizers=["r1", "label-smoothing:real=0.9"], loggers=["tensorboard"]),
    ],
    ids=["default", "ring-wgan-gp", "two-regularizers-and-a-logger"],
)
def test_resolved_config_survives_toml_exactly(config: RunConfig) -> None:
    resolved = resolve(config, get_registry()).config
    again = RunConfig.model_validate(tomllib.loads(toml_text(resolved.model_dump(mode="json"))))
    # TOML has no null: an option that is None (mnist-5k's path) is left out and resolves to None again.
    assert resolve(again, get_registry()).config == resolved


def test_run_writes_config_toml_equal_to_config_json_and_its_rerun_is_identical(in_tmp: Path) -> None:
    ok("run", *TINY, *SHORT, "--reg", "instance-noise:sigma=0.2", "--out", "first", "-q")
    as_json = json.loads((in_tmp / "first" / "config.json").read_text())
    as_toml = tomllib.loads((in_tmp / "first" / "config.toml").read_text())
    assert as_toml == without_none(as_json)
    assert as_toml["regularizers"][0]["options"]["sigma"] == 0.2

    ok("run", "--config", "first/config.toml", "--out", "again", "-q")
    first, again = final_weights(in_tmp / "first"), final_weights(in_tmp / "again")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first), "the rerun from config.toml diverged"
    rerun = json.loads((in_tmp / "again" / "config.json").read_text())
    assert {**rerun, "out": None} == {**as_json, "out": None}


# -- ganforge config show ------------------------------------------------------


def test_config_show_prints_the_resolved_config_as_toml_and_json(in_tmp: Path) -> None:
    flags = ["--gen", "mlp", "--data", "ring-8", "--loss", "wgan-gp", "--steps", "7"]
    expected = resolve(RunConfig(generator="mlp", dataset="ring-8", loss="wgan-gp", steps=7), get_registry()).config
    shown = tomllib.loads(ok("config", "show", *flags).stdout)
    assert RunConfig.model_validate(shown) == expected
    assert shown["scheduler"]["options"]["d_steps"] == 5 and shown["lr_g"] == expected.lr_g  # defaults filled in
    assert RunConfig.model_validate_json(ok("config", "show", *flags, "--json").stdout) == expected
    assert not list(in_tmp.iterdir()), "config show must not train or write anything"


def test_config_show_reads_config_files_and_flags_override_them(in_tmp: Path) -> None:
    (in_tmp / "c.toml").write_text(ok("config", "show", "--gen", "mlp", "--data", "ring-8").stdout)
    shown = tomllib.loads(ok("config", "show", "--config", "c.toml", "--seed", "3").stdout)
    assert shown["generator"]["name"] == "mlp" and shown["seed"] == 3


@pytest.mark.parametrize(
    ("args", "mention"),
    [
        (["--gen", "dcgam"], "did you mean 'dcgan'"),
        (["--steps", "0"], "--steps"),
        (["--logger", "wandb"], "unknown logger 'wandb'"),
        (["--loss", "wgan-gp", "--reg", "label-smoothing"], "cannot be combined"),
    ],
)
def test_config_show_reports_bad_flags_like_run(in_tmp: Path, args: list[str], mention: str) -> None:
    result = ganforge("config", "show", *args)
    assert result.exit_code == 2 and mention in result.output, result.output
    assert "Traceback" not in result.output


def option_names(command_path: list[str]) -> set[str]:
    import typer.main

    command: Any = typer.main.get_command(app)
    for name in command_path:
        command = command.commands[name]
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_run_and_config_show_share_one_flag_declaration() -> None:
    shared = {parameter.name for parameter in training.RUN_PARAMETERS}
    assert shared == set(RunConfig.model_fields) | {"config", "preset"}
    run, show = option_names(["run"]), option_names(["config", "show"])
    assert run - {"--resume", "--quiet", "-q"} == show - {"--json"}
    assert {"--logger", "--config", "--gen", "--cudnn-benchmark"} <= show


# -- losses.png ----------------------------------------------------------------


def test_a_finished_run_draws_its_loss_curves(in_tmp: Path) -> None:
    ok("run", *TINY, *SHORT, "--out", "r", "-q")
    assert (in_tmp / "r" / "losses.png").read_bytes().startswith(PNG)


def test_plot_losses_reads_only_loss_records(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "\n".join(
            [
                json.dumps({"step": 1, "loss/d": 1.0, "loss/g": 2.0}),
                json.dumps({"step": 2, "event": "warning", "message": "x"}),
                "torn lin",
                json.dumps({"step": 2, "loss/d": math.inf, "loss/g": 1.5}),
            ]
        )
    )
    assert plot_losses(metrics, tmp_path / "l.png") == tmp_path / "l.png"
    assert (tmp_path / "l.png").read_bytes().startswith(PNG)
    metrics.write_text(json.dumps({"step": 1, "event": "eval", "m": 1.0}) + "\n")
    assert plot_losses(metrics, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


# -- --logger tensorboard --------------------------------------------------------


def test_tensorboard_logger_writes_scalars_and_sample_grids(in_tmp: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ok("run", *TINY, *SHORT, "--logger", "tensorboard", "--out", "tb", "-q")
    events = EventAccumulator(str(in_tmp / "tb" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("loss/d")] == [2, 4, 6]
    assert {"loss/g", "img/s", "eval/mixture-modes/modes"} <= set(events.Tags()["scalars"])
    logged = [json.loads(line) for line in (in_tmp / "tb" / "metrics.jsonl").read_text().splitlines()]
    accuracy = [r["d/accuracy/real"] for r in logged if "d/accuracy/real" in r]
    assert [e.value for e in events.Scalars("d/accuracy/real")] == pytest.approx(accuracy)
    assert len(accuracy) == 3 and len(events.Scalars("d/accuracy/fake")) == 3
    assert [e.step for e in events.Images("samples")] == [3, 6]
    with Image.open(in_tmp / "tb" / "samples.png") as grid:
        assert (events.Images("samples")[-1].width, events.Images("samples")[-1].height) == grid.size

    # On resume the writer purges events past the checkpoint: every step is logged once.
    ok("run", "--resume", "tb", "--steps", "10", "-q")
    events = EventAccumulator(str(in_tmp / "tb" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("loss/d")] == [2, 4, 6, 8, 10]
    assert [e.step for e in events.Images("samples")] == [3, 6, 9, 10]
    assert tomllib.loads((in_tmp / "tb" / "config.toml").read_text())["loggers"] == [{"name": "tensorboard", "options": {"dir": "tensorboard", "flush_every": 1}}]


def test_without_the_logger_flag_nothing_is_written_for_tensorboard(in_tmp: Path) -> None:
    ok("run", *TINY, *SHORT, "--out", "plain", "-q")
    assert not (in_tmp / "plain" / "tensorboard").exists()
    assert json.loads((in_tmp / "plain" / "config.json").read_text())["loggers"] == []


@pytest.mark.parametrize("flags", [["--logger", "tensorboard"], ["--logger", "jsonl,tensorboard"]])
def test_missing_tensorboard_is_one_error_line_before_training(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    result = ganforge("run", *TINY, *SHORT, *flags, "--out", "tb")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "pip install tensorboard" in lines[0]
    assert not (in_tmp / "tb").exists(), "checked before the run directory is made"


def test_missing_tensorboard_also_stops_the_python_api_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganforge_core import train
    from ganforge_core.errors import ConfigError

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    config = RunConfig(generator="mlp", dataset="ring-8", steps=2, loggers=["tensorboard"], out=tmp_path / "r")
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        train(config, quiet=True)
    assert not (tmp_path / "r").exists()


def test_jsonl_is_always_on_and_loggers_are_normalised() -> None:
    from ganforge_core import get_registry, resolve
    from ganforge_core.errors import ConfigError

    assert RunConfig(loggers=["jsonl"]).loggers == []
    assert [str(c) for c in RunConfig(loggers=["tensorboard,jsonl", " tensorboard"]).loggers] == ["tensorboard"]
    assert [str(c) for c in RunConfig(loggers="tensorboard:dir=tb").loggers] == ["tensorboard:dir=tb"]
    with pytest.raises(ConfigError, match=r"unknown logger 'tensorbored' \(did you mean 'tensorboard'\?\)"):
        resolve(RunConfig(loggers=["tensorbored"]), get_registry())
    with pytest.raises(ConfigError, match="logger 'tensorboard': unknown option 'dri'"):
        resolve(RunConfig(loggers=["tensorboard:dri=x"]), get_registry())


# -- docs/cli.md ---------------------------------------------------------------


def test_cli_reference_is_generated_from_the_real_help() -> None:
    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == cli_reference(app), "regenerate with: .venv/bin/ganforge docs cli > docs/cli.md"


def test_cli_reference_covers_every_visible_command_and_is_terminal_independent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page = cli_reference(app)
    for title in ("ganforge run", "ganforge config show", "ganforge sample", "ganforge eval", "ganforge plugins"):
        assert f"## `{title}`" in page
    assert "ganforge docs" not in re.findall(r"^## `(.*)`$", page, re.MULTILINE)
    assert "--logger" in page and "[default: dcgan]" in page
    assert not any(line != line.rstrip() for line in page.splitlines())
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("TERMINAL_WIDTH", "40")
    assert cli_reference(app) == page


def test_hidden_docs_command_prints_the_page() -> None:
    assert ok("docs", "cli").output == cli_reference(app)
    assert "docs" not in re.findall(r"^\s+(\w+)\s", ok("--help").output, re.MULTILINE)


# -- docs/quickstart.md and README ---------------------------------------------

# Commands the quickstart may show but the test does not run, each with why.
NOT_RUN = {
    ".venv/bin/pip install tensorboard": "installs a package",
    ".venv/bin/tensorboard --logdir runs": "starts a server",
    ".venv/bin/pip install ./examples/ganforge-rsgan": "installs a package (tests/test_example_plugin.py does)",
}


def quickstart_commands() -> list[str]:
    text = (ROOT / "docs" / "quickstart.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def make_run_preset() -> list[str]:
    """The preset flags `make run` passes (the Makefile's run recipe and RUN_PRESET)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run: .*\n\t(.*)$", makefile, re.MULTILINE)
    preset = re.search(r"^RUN_PRESET \?= (\S+)$", makefile, re.MULTILINE)
    assert recipe and preset and recipe[1] == "$(BIN)/ganforge run --preset $(RUN_PRESET) $(ARGS)", makefile
    return ["--preset", preset[1]]


def as_tiny(words: list[str]) -> list[str]:
    """The quickstart's command with tiny settings: small networks, 2D data, few steps."""
    if words[:2] == ["make", "run"]:
        (assignment,) = words[2:] or ["ARGS="]
        words = [".venv/bin/ganforge", "run", *make_run_preset(), *shlex.split(assignment.removeprefix("ARGS="))]
    assert words[0] == ".venv/bin/ganforge", words
    args = words[1:]
    if args[0] == "run" and "--resume" in args:
        return [a if args[i - 1] != "--steps" else "12" for i, a in enumerate(args)]
    if args[0] == "run":
        return [*args, *TINY, *SHORT, "-q"]
    return args


def test_every_quickstart_command_works(in_tmp: Path) -> None:
    import importlib.util

    commands = quickstart_commands()
    assert any(c.startswith("make run") for c in commands) and len(commands) > 10
    have_tensorboard = importlib.util.find_spec("tensorboard") is not None
    for line in commands:
        if line in NOT_RUN:
            continue
        words = shlex.split(line, comments=True)
        redirect = None
        if ">" in words:
            words, redirect = words[: words.index(">")], words[words.index(">") + 1]
        args = as_tiny(words)
        result = ganforge(*args)
        if "--logger" in args and not have_tensorboard:
            assert result.exit_code == 2 and "pip install tensorboard" in result.output, (line, result.output)
            continue
        assert result.exit_code == 0, (line, result.output)
        if redirect:
            (in_tmp / redirect).write_text(result.stdout)
    assert (in_tmp / "grid.png").read_bytes().startswith(PNG)
    assert (in_tmp / "samples.npy").exists() and (in_tmp / "runs" / "first" / "eval.json").exists()
    assert len(ckpt.list_checkpoints(in_tmp / "runs" / "first")) and final_weights(in_tmp / "runs" / "first")
    assert torch.load(ckpt.list_checkpoints(in_tmp / "runs" / "first")[-1], weights_only=True)["step"] == 12


def test_quickstart_shows_only_commands_the_test_knows() -> None:
    for line in quickstart_commands():
        assert line in NOT_RUN or line.startswith((".venv/bin/ganforge ", "make run")), line
    for line in NOT_RUN:
        assert line in quickstart_commands(), f"{line} is no longer in docs/quickstart.md; drop it from NOT_RUN"
    assert (ROOT / "examples" / "ganforge-rsgan" / "pyproject.toml").exists()


def test_readme_lists_the_new_docs_and_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for needle in ("docs/quickstart.md", "docs/cli.md", "config show", "--logger tensorboard", "config.toml", "losses.png"):
        assert needle in readme, needle
    assert os.path.exists(ROOT / "docs" / "quickstart.md") and "ganforge_tensorboard" in (
        ROOT / "pyproject.toml"
    ).read_text()


# -- the progress view -----------------------------------------------------------

LIVE = ["--lr-g", "0.0003", "--lr-d", "0.0001"]


class Warner:
    """A plugin whose step hook warns through run.warn, as the health monitors do."""

    @hookimpl
    def ganforge_step_end(self, run: Any, step: int, stats: dict[str, float]) -> None:
        if step == 4:
            run.warn("test-monitor: D is winning [hint]")


def test_the_live_view_shows_losses_rates_checkpoint_and_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools
    import io

    from rich.console import Console

    from ganforge_core import session
    from ganforge_core.plugins import Plugins
    from ganforge_core.reporting import ProgressView

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, color_system=None)
    monkeypatch.setattr(session, "ProgressView", functools.partial(ProgressView, console=console))
    config = RunConfig(
        generator="mlp:hidden=8,depth=1",
        discriminator="mlp:hidden=8,depth=1",
        dataset="ring-8:n=256",
        steps=6,
        log_every=2,
        sample_every=0,
        checkpoint_every=3,
        lr_g=3e-4,
        lr_d=1e-4,
        device="cpu",
        out=tmp_path / "r",
    )
    session.train(config, live=True, plugins=Plugins(extra=[("warner", Warner())]))
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # cursor movements
    final = shown[shown.rindex("training") :]  # the last frame of the view
    assert "6/6" in final and "eta" in final
    for needle in ("loss D ", " G ", "D(x) ", "D(G(z)) ", " img/s", "lr G 0.0003  D 0.0001"):
        assert needle in final, (needle, final)
    assert f"checkpoint step 6: {tmp_path / 'r' / 'checkpoint-00000006.pt'}" in final
    assert "warning: test-monitor: D is winning [hint]" in shown, "warnings print above the view, markup intact"
    frames = shown.split("training ")
    assert any("checkpoint step 3:" in frame for frame in frames), "the view showed the step-3 checkpoint"


def test_plain_lines_carry_the_learning_rates_and_the_last_checkpoint(in_tmp: Path) -> None:
    result = ok("run", *TINY, *SHORT, *LIVE, "--sched", "linear-decay", "--out", "r")
    lines = [line for line in result.output.splitlines() if line.startswith("step ")]
    assert len(lines) == 3 and "lr/g=" in lines[0] and "lr/d=" in lines[0], result.output
    assert "checkpoint" not in lines[0] and "checkpoint 3" in lines[1]
    logged = [json.loads(line) for line in (in_tmp / "r" / "metrics.jsonl").read_text().splitlines()]
    rates = [(r["lr/g"], r["lr/d"]) for r in logged if "lr/g" in r]
    assert len(rates) == 3 and rates[0][0] > rates[-1][0] and rates[0][1] > rates[-1][1], "the schedule's rates"
    # linear-decay reaches its end (0 by default) at the last step; until then G's rate is 3x D's.
    assert all(math.isclose(g, 3.0 * d, rel_tol=1e-6) for g, d in rates[:-1])
    assert rates[-1] == (0.0, 0.0), "the schedule's end value at the last step"
    quiet = ok("run", *TINY, *SHORT, "--out", "q", "-q")
    assert not [line for line in quiet.output.splitlines() if line.startswith("step ")]
