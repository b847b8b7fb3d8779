"""What users of the classic GAN tutorials expect: D's accuracy on real and fake
batches, runs measured in epochs, and progress bars on every long wait."""

from __future__ import annotations

import io
import json
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn
from typer.testing import CliRunner

from ganforge_core import RunConfig, resolve, waiting
from ganforge_core.cli import app
from ganforge_core.config import steps_for_epochs
from ganforge_core.errors import ConfigError
from ganforge_core.plugins import get_plugins
from ganforge_core.reporting import ProgressView
from ganforge_core.run import Run
from ganforge_core.session import train
from support import caching_registry
from test_reliability import TINY_MLP, records, tiny_config

REGISTRY = caching_registry()
RUN_DIR = Path(tempfile.gettempdir()) / "ganforge-tutorial-never-written"

# D's logit is a sample's first coordinate; G always makes the same four fakes.
REALS = torch.tensor([[0.2, 0.0], [0.7, 0.0], [-1.0, 0.0], [3.0, 0.0]])
FAKES = torch.tensor([[-0.2, 0.0], [0.3, 0.0], [-0.6, 0.0], [-2.0, 0.0]])


class FirstCoordinate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return x[:, 0] * self.scale


class FixedFakes(nn.Module):
    z_dim = 2

    def forward(self, z: Tensor) -> Tensor:
        return FAKES.clone()


def tiny_run(loss: str) -> Run:
    config = RunConfig.model_validate(
        {**TINY_MLP, "loss": loss, "batch_size": 4, "steps": 4, "device": "cpu", "metrics": []}
    )
    return Run(resolve(config, REGISTRY), get_plugins(), RUN_DIR)


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        ("non-saturating", {"d/accuracy/real": 0.75, "d/accuracy/fake": 0.75}),  # logits > 0 / < 0
        ("hinge", {"d/accuracy/real": 0.75, "d/accuracy/fake": 0.75}),
        ("lsgan", {"d/accuracy/real": 0.5, "d/accuracy/fake": 1.0}),  # LSGAN's outputs > 0.5 / < 0.5
        ("wgan-gp", {}),  # a critic's scores make no call: no accuracy
        ("relativistic", {}),
    ],
)
def test_d_accuracy_counts_logits_against_the_losss_decision_threshold(loss: str, expected: dict[str, float]) -> None:
    engine = tiny_run(loss).engine
    engine.discriminator, engine.generator = FirstCoordinate(), FixedFakes()
    stats = engine.d_phase(REALS, step=0)
    accuracy = {k: float(v) for k, v in stats.items() if k.startswith("d/accuracy")}
    assert accuracy == expected
    assert all(v.device == engine.device and v.dim() == 0 for k, v in stats.items() if k.startswith("d/accuracy"))


def test_d_accuracy_is_averaged_into_metrics_jsonl_and_the_plain_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(tiny_config(tmp_path / "r", steps=8, log_every=4, sample_every=0), live=False)
    logged = [r for r in records(tmp_path / "r") if "event" not in r]
    assert [r["step"] for r in logged] == [4, 8]
    for record in logged:
        assert 0.0 <= record["d/accuracy/real"] <= 1.0 and 0.0 <= record["d/accuracy/fake"] <= 1.0
        # a mean of 4 steps' shares of 64 samples: a multiple of 1/256
        assert (record["d/accuracy/real"] * 256) == pytest.approx(round(record["d/accuracy/real"] * 256))
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("step 8/8")][0]
    assert f"d/accuracy/real={logged[1]['d/accuracy/real']:.3g}" in line
    assert f"d/accuracy/fake={logged[1]['d/accuracy/fake']:.3g}" in line


def test_the_live_view_shows_d_accuracy_in_percent() -> None:
    view = ProgressView(total=10, start=0, live=False)
    view.stats = {"loss/d": 1.2, "loss/g": 0.7, "d/accuracy/real": 0.625, "d/accuracy/fake": 0.5}
    assert "D acc real 62% fake 50%" in view.status()
    view.stats = {"loss/d": 1.2, "loss/g": 0.7}  # a critic: no accuracy, no empty label
    assert "acc" not in view.status()


# -- --epochs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epochs", "samples", "batch_size", "d_steps", "steps"),
    [
        (3, 5000, 64, 1, 235),  # 234.375 batches: the last, partial one counts
        (2, 256, 64, 1, 8),
        (1, 640, 64, 5, 2),  # each G step's 5 D steps draw 5 batches
        (1.1, 50000, 100, 1, 550),  # exactly 550 batches, though 1.1 * 50000 / 100 > 550 in floats
        (0.001, 256, 64, 1, 1),  # at least one step
    ],
)
def test_epochs_become_g_steps(epochs: float, samples: int, batch_size: int, d_steps: int, steps: int) -> None:
    assert steps_for_epochs(epochs, samples, batch_size, d_steps) == steps


CLI_TINY = ["--gen", "mlp:hidden=8,depth=1", "--disc", "mlp:hidden=8,depth=1", "--data", "ring-8:n=256"]
CLI_QUIET = ["--device", "cpu", "--metric", "none", "--sample-every", "0", "--checkpoint-every", "0"]


def cli(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_a_run_in_epochs_trains_the_converted_steps_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "r"
    result = cli("run", *CLI_TINY, *CLI_QUIET, "--epochs", "2.5", "--sched", "constant:d_steps=2", "--out", out)
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("training on cpu; data: resident (0.0 MB float32); --epochs 2.5 of 256 samples at batch 64 x 2 D steps: 5 steps;"), first
    assert "done: 5 steps" in result.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["steps"], saved["epochs"]) == (5, None)  # config.json reruns (and resumes) 5 steps
    assert [r["step"] for r in records(out) if "event" not in r][-1] == 5


def test_steps_and_epochs_in_one_place_are_refused_but_a_layer_may_replace_the_other(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--steps 5 and --epochs 2 both set the run's length; give one"):
        RunConfig(steps=5, epochs=2)
    result = cli("config", "show", "--steps", "5", "--epochs", "2")
    assert result.exit_code == 2
    assert result.output == "error: --steps 5 and --epochs 2 both set the run's length; give one\n"
    # --epochs over a config file's steps, and --steps over a file's epochs: the flag decides.
    file = tmp_path / "c.toml"
    file.write_text("steps = 40\nbatch_size = 32\n")
    shown = tomllib.loads(cli("config", "show", "--config", file, "--epochs", "3").output)
    assert (shown["epochs"], shown["batch_size"], "steps" in shown) == (3.0, 32, False)
    file.write_text("epochs = 4\n")
    shown = tomllib.loads(cli("config", "show", "--config", file, "--steps", "9").output)
    assert (shown["steps"], "epochs" in shown) == (9, False)


def test_config_show_under_epochs_is_a_config_that_reruns_it(tmp_path: Path) -> None:
    shown = cli("config", "show", *CLI_TINY, "--epochs", "2")
    assert shown.exit_code == 0, shown.output
    file = tmp_path / "shown.toml"
    file.write_text(shown.output)
    again = cli("config", "show", "--config", file)
    assert again.exit_code == 0 and again.output == shown.output


# -- progress bars on long waits ---------------------------------------------------------


class Recorder:
    """Stands in for the rich display that waits add their bars to; records what they do."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def add_task(self, description: str, total: float | None = None) -> int:
        self.events.append(("add", description, total))
        return len(self.events)

    def advance(self, task: int, amount: float) -> None:
        self.events.append(("advance", amount))

    def update(self, task: int, description: str) -> None:
        self.events.append(("describe", description))

    def remove_task(self, task: int) -> None:
        self.events.append(("remove",))


def bars(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The bars added, with how far each advanced and what it said on the way."""
    shown: list[tuple[Any, ...]] = []
    for event in events:
        if event[0] == "add":
            shown.append((event[1], event[2], 0))
        elif event[0] == "advance":
            description, total, done = shown[-1]
            shown[-1] = (description, total, done + event[1])
    return shown


def test_a_folder_shows_a_bar_while_it_checks_its_images_and_another_while_they_are_read(tmp_path: Path) -> None:
    from PIL import Image

    from ganforge_datasets.folder import load_folder
    from ganforge_datasets.options import FolderOptions

    for i in range(3):
        Image.new("RGB", (10, 12), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
    recorder = Recorder()
    with waiting.shown(True), waiting.joining(recorder):
        dataset = load_folder(FolderOptions(root=tmp_path, size=8), None)  # type: ignore[arg-type]
    assert len(dataset) == 3
    assert bars(recorder.events) == [("checking 3 images", 3, 3)]
    assert recorder.events[-1] == ("remove",)
    from ganforge_core.residency import resident_samples

    recorder = Recorder()
    with waiting.shown(True), waiting.joining(recorder):
        resident_samples(dataset, torch.device("cpu"))
    assert bars(recorder.events) == [("reading 3 samples to the cpu", 3, 3)]


def test_training_the_digit_classifier_shows_a_bar_per_batch() -> None:
    from ganforge_digit_metrics import classifier

    labels = torch.arange(10).repeat_interleave(100)  # 100 digits per class: 80 train, 20 held out
    images = torch.rand(1000, 1, 28, 28) * 2 - 1
    recorder = Recorder()
    with waiting.shown(True), waiting.joining(recorder):
        classifier.train_classifier(images, labels)
    steps = classifier.EPOCHS * (800 // classifier.BATCH)
    assert bars(recorder.events) == [("training the MNIST classifier (once; it is cached)", steps, steps)]


def run_recording(tmp_path: Path, name: str, **kwargs: Any) -> list[tuple[Any, ...]]:
    recorder = Recorder()
    config = tiny_config(tmp_path / name, steps=2, log_every=1, sample_every=0, metrics=["mixture-modes"])
    with waiting.joining(recorder):
        train(config, **kwargs)
    return recorder.events


def test_a_run_shows_bars_for_its_dataset_and_evaluation_unless_quiet_or_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)  # as on a terminal
    monkeypatch.setattr(ProgressView, "__init__", plain_view(ProgressView.__init__))
    events = run_recording(tmp_path, "terminal")
    assert bars(events) == [("loading dataset ring-8", None, 0), ("evaluating", 1, 1)]
    assert ("describe", "evaluating mixture-modes") in events
    assert run_recording(tmp_path, "quiet", quiet=True) == []
    assert run_recording(tmp_path, "plain", live=False) == []


def plain_view(init: Any) -> Any:
    """The progress view in plain lines even where stderr is a terminal (the test's recorder shows the bars)."""

    def without_live(self: Any, total: int, start: int, live: bool | None = None, **kwargs: Any) -> None:
        init(self, total, start, live=False, **kwargs)

    return without_live


def test_off_a_terminal_a_wait_shows_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert waiting.visible() is False  # pytest's stderr is no terminal
    with waiting.progress("nothing to see", total=2) as wait:
        wait.advance()
        wait.describe("still nothing")
    assert capsys.readouterr().err == ""


def test_under_the_live_view_a_wait_is_a_second_bar_of_the_view() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    view = ProgressView(total=10, start=0, live=True, console=console)
    try:
        with waiting.shown(True), waiting.progress("evaluating", total=2) as wait:
            wait.advance()
            assert [(t.description, t.total, t.completed) for t in view._bar.tasks] == [
                ("training", 10, 0),
                ("evaluating", 2, 1),
            ]
        assert [t.description for t in view._bar.tasks] == ["training"]
    finally:
        view.close()
    with waiting.shown(True), waiting.progress("after the view", total=1):
        assert [t.description for t in view._bar.tasks] == ["training"], "a closed view takes no more bars"
