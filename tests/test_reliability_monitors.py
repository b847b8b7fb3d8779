"""The ``monitors`` plugin: each known failure shape is warned about once, with a hint.

Most tests drive the hooks directly with synthetic statistics and a fake run
context; one trains a real run in which D wins and finds the warning in
``metrics.jsonl``. (That the monitors leave exact resume intact is shown in
``test_reliability_resume.py``, where they are active and sample G.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import ganforge_monitors
from ganforge_core import Dataset, RunConfig
from ganforge_core.plugins import Plugins
from ganforge_core.session import train
import ganforge_monitors.monitors as monitors
from ganforge_monitors.monitors import KEY, Settings, State
from test_reliability import TINY_MLP, records, tiny_config



class Spread(nn.Module):
    """A generator whose samples vary with z (healthy) or not at all (collapsed)."""

    def __init__(self, collapsed: bool = False, z_dim: int = 4, batchnorm: bool = True) -> None:
        super().__init__()
        self.z_dim, self.collapsed = z_dim, collapsed
        self.linear = nn.Linear(z_dim, 2)
        self.norm = nn.BatchNorm1d(2) if batchnorm else nn.Identity()

    def forward(self, z: Tensor) -> Tensor:
        out = self.norm(self.linear(z))
        return out * 0 + self.linear.bias if self.collapsed else out


class Broken(nn.Module):
    z_dim = 4

    def forward(self, z: Tensor) -> Tensor:
        raise RuntimeError("generator bug")


@dataclass
class FakeRun:
    """What the hooks read of a RunContext, and the warnings they give."""

    config: RunConfig
    generator: nn.Module = field(default_factory=Spread)
    dataset: Dataset = field(default_factory=lambda: Dataset(samples=torch.randn(512, 2)))
    device: torch.device = torch.device("cpu")
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


def fake_run(loss: str = "non-saturating", **kwargs: Any) -> FakeRun:
    run = FakeRun(config=RunConfig.model_validate({**TINY_MLP, "loss": loss}), **kwargs)
    ganforge_monitors.ganforge_train_start(run=run)
    return run


WARMUP = ganforge_monitors.SETTINGS.warmup_steps


def feed(run: FakeRun, stats: Iterable[tuple[float, float]], first_step: int = WARMUP, every: int = 10) -> None:
    for i, (d, g) in enumerate(stats):
        ganforge_monitors.ganforge_step_end(run=run, step=first_step + i * every, stats={"loss/d": d, "loss/g": g})


def d_winning(n: int) -> list[tuple[float, float]]:
    """loss/d near zero while loss/g climbs."""
    return [(0.01 + 0.001 * (i % 3), 2.0 + 0.2 * i) for i in range(n)]


def healthy(n: int) -> list[tuple[float, float]]:
    return [(1.3 + 0.05 * ((i * 7) % 5), 0.8 + 0.03 * ((i * 3) % 7)) for i in range(n)]


def only(warnings: list[str], words: str) -> str:
    assert len(warnings) == 1, warnings
    text = warnings[0]
    assert text.startswith("monitors: ") and words in text and "Try:" in text, text
    return text


# -- D wins -----------------------------------------------------------------------------


def test_d_winning_most_of_the_time_is_still_d_winning() -> None:
    """loss/d is noisy: a few intervals above the threshold do not hide the shape."""
    run = fake_run()
    stats = d_winning(60)
    stats[3::5] = [(0.2, g) for _, g in stats[3::5]]  # one interval in five above 0.05
    feed(run, stats)
    only(run.warnings, "D is winning")


def test_d_winning_for_many_intervals_is_warned_once_with_a_hint() -> None:
    run = fake_run()
    settings = ganforge_monitors.SETTINGS
    feed(run, d_winning(settings.d_wins_intervals - 1))
    assert run.warnings == [], "not before the patience runs out"
    feed(run, d_winning(60)[settings.d_wins_intervals - 1 :], first_step=1000)
    text = only(run.warnings, "D is winning")
    assert "--lr-d" in text


@pytest.mark.parametrize(
    "stats",
    [
        [(0.01, 5.0 + 0.1 * i) if i % 2 else (0.6, 5.0 + 0.1 * i) for i in range(60)],  # D wins half the time
        [(0.01, 8.0 - 0.1 * i) for i in range(60)],  # loss/g falls: G is catching up
        healthy(60),
    ],
    ids=["intermittent", "g-recovering", "healthy"],
)
def test_no_d_wins_warning_without_the_whole_shape(stats: list[tuple[float, float]]) -> None:
    run = fake_run()
    feed(run, stats)
    assert [w for w in run.warnings if "D is winning" in w] == []


def test_d_wins_is_not_judged_for_wasserstein_losses() -> None:
    run = fake_run(loss="wgan-gp")
    feed(run, d_winning(60))
    assert run.warnings == []


# -- frozen losses ------------------------------------------------------------------------


def test_losses_frozen_for_many_intervals_are_warned_once() -> None:
    run = fake_run()
    patience = ganforge_monitors.SETTINGS.frozen_intervals
    feed(run, [(1.386294, 0.693147)] * patience)
    assert run.warnings == []
    # Changes at float32 rounding level still count as frozen.
    feed(run, [(1.386294 * (1 + 5e-8 * (i % 2)), 0.693147) for i in range(40)], first_step=500)
    only(run.warnings, "stalled")


def test_small_real_changes_are_not_frozen() -> None:
    run = fake_run()
    feed(run, [(1.3862 + 1e-5 * (i % 2), 0.6931) for i in range(80)])
    assert run.warnings == []


# -- identical samples --------------------------------------------------------------------


def test_identical_samples_are_warned_once_without_touching_the_rng() -> None:
    run = fake_run(generator=Spread(collapsed=True))
    state_before = torch.get_rng_state()
    running_mean = run.generator.norm.running_mean.clone()
    feed(run, healthy(3 * ganforge_monitors.SETTINGS.sample_every))
    assert torch.equal(torch.get_rng_state(), state_before), "the training RNG stream moved"
    assert run.generator.training, "G is back in training mode"
    assert torch.equal(run.generator.norm.running_mean, running_mean), "sampling changed BatchNorm statistics"
    only(run.warnings, "mode collapse")


def test_no_check_runs_before_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh G can look collapsed (a dcgan at 128x128 warned at step 2): nothing is judged before step WARMUP."""
    drawn: list[int] = []
    monkeypatch.setattr(monitors, "sample_spread", lambda run, n: drawn.append(n) or 0.0)
    run = fake_run(generator=Spread(collapsed=True))
    feed(run, d_winning(WARMUP - 1), first_step=1, every=1)  # steps 1 .. WARMUP - 1: D wins, G collapsed
    assert (run.warnings, drawn, run.extra[KEY].intervals) == ([], [], 0)
    feed(run, [(1.3, 0.8)], first_step=WARMUP)
    assert drawn == [ganforge_monitors.SETTINGS.sample_size], "the first interval checked draws samples"
    only(run.warnings, f"samples from G at step {WARMUP} are (almost) identical")


def test_the_warm_up_is_a_setting() -> None:
    run = FakeRun(config=RunConfig.model_validate(TINY_MLP), generator=Spread(collapsed=True))
    settings = Settings(warmup_steps=0)
    monitors.start(run, settings)
    monitors.observe(run, 1, {"loss/d": 1.3, "loss/g": 0.8}, settings)
    only(run.warnings, "samples from G at step 1 are (almost) identical")


def test_varied_samples_are_not_collapse() -> None:
    run = fake_run(generator=Spread(collapsed=False))
    feed(run, healthy(3 * ganforge_monitors.SETTINGS.sample_every))
    assert run.warnings == []


# -- robustness ---------------------------------------------------------------------------


def test_state_lives_on_each_run_not_in_the_module() -> None:
    winning, fine = fake_run(), fake_run()
    for (d_win, g_win), (d_ok, g_ok) in zip(d_winning(40), healthy(40), strict=True):
        ganforge_monitors.ganforge_step_end(run=winning, step=WARMUP, stats={"loss/d": d_win, "loss/g": g_win})
        ganforge_monitors.ganforge_step_end(run=fine, step=WARMUP, stats={"loss/d": d_ok, "loss/g": g_ok})
    assert len(winning.warnings) == 1 and fine.warnings == []
    assert isinstance(winning.extra[KEY], State) and winning.extra[KEY] is not fine.extra[KEY]
    # A resumed run gets a fresh context and fresh state from train_start.
    resumed = fake_run()
    assert resumed.extra[KEY].warned == set()


def test_a_failing_check_warns_once_and_never_raises() -> None:
    run = fake_run(generator=Broken())
    feed(run, healthy(50))
    text = only_text(run.warnings)
    assert "generator bug" in text and "monitoring is off" in text


def only_text(warnings: list[str]) -> str:
    assert len(warnings) == 1, warnings
    return warnings[0]


def test_missing_or_non_finite_stats_are_ignored() -> None:
    run = fake_run()
    for step in range(WARMUP, WARMUP + 40):
        ganforge_monitors.ganforge_step_end(run=run, step=step, stats={"img/s": 10.0})
        ganforge_monitors.ganforge_step_end(run=run, step=step, stats={"loss/d": float("nan"), "loss/g": 1.0})
    assert run.warnings == []


# -- a real run -----------------------------------------------------------------------


def with_monitors() -> Plugins:
    plugins = Plugins()
    if "monitors" not in plugins.registry.plugins:  # a stale egg-info on sys.path can hide the entry point
        plugins = Plugins(extra=[("monitors", ganforge_monitors)])
    return plugins


def test_a_real_run_where_d_wins_records_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugins = with_monitors()
    # G without BatchNorm starts as a tight blob that a fast D separates from the ring.
    fields = {"generator": "mlp:hidden=16,depth=1,batchnorm=false", "steps": 120, "log_every": 5}
    out = tmp_path / "d-wins"
    train(tiny_config(out, **fields, lr_d=0.1, lr_g=1e-6), plugins=plugins, live=False)
    warnings = [r for r in records(out) if r.get("event") == "warning"]
    assert len(warnings) == 1, warnings
    assert "D is winning" in warnings[0]["message"] and warnings[0]["step"] > 0
    assert "warning: monitors: D is winning" in capsys.readouterr().err

    control = tmp_path / "control"
    train(tiny_config(control, **fields), plugins=plugins, quiet=True)
    assert [r for r in records(control) if r.get("event") == "warning"] == []
