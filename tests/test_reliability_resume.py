"""Resume is exact on the CPU, and a resumed run's log has one record per step.

A run stopped by a signal at step k and resumed must reach, at step N, the very
bits of a run never stopped: G, D, both optimizers, regularizer state, the batch
sampler and every RNG. That holds only if the checkpoint holds all the state the
step reads and nothing outside the step draws from the training RNG stream: the
``monitors`` plugin is active here and samples G (inside ``fork_rng``) at
different steps in the stopped, resumed and reference runs.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

import ganforge_monitors
import ganforge_monitors.monitors as monitors
from ganforge_core import RunConfig, hookimpl
from ganforge_core import checkpoint as ckpt
from ganforge_core.plugins import Plugins
from ganforge_core.session import Interrupted, train
from support import caching_registry
from test_reliability import TINY_MLP, SignalAt, assert_identical, logged_steps, records, tiny_config


CASES: dict[str, dict[str, Any]] = {
    # A stochastic regularizer, 5 critic steps per G step, several epochs of the sampler.
    "wgan-gp+instance-noise": {
        **TINY_MLP,
        "loss": "wgan-gp",
        "regularizers": ["instance-noise"],
        "steps": 10,
        "batch_size": 64,
    },
    # Conv nets with BatchNorm in G and spectral norm's power-iteration buffers in D.
    "non-saturating+dcgan+spectral-norm": {
        "generator": "dcgan:width=4",
        "discriminator": "dcgan:width=4",
        "dataset": "mnist-5k",
        "loss": "non-saturating",
        "regularizers": ["spectral-norm"],
        "steps": 12,
        "batch_size": 16,
    },
    # Lazy R1 (its own D reg phase every 3rd D step) with 2 D steps per G step: D steps
    # 0-15, R1 on 0, 3, 6, 9, 12, 15. The stop after step 2 (D step 3) falls mid-interval.
    "non-saturating+lazy-r1+2-d-steps": {
        **TINY_MLP,
        "loss": "non-saturating",
        "regularizers": ["r1:gamma=1,every=3"],
        "scheduler": "constant:d_steps=2",
        "steps": 8,
        "batch_size": 32,
    },
}
STOP_AT = {"wgan-gp+instance-noise": 4, "non-saturating+dcgan+spectral-norm": 5, "non-saturating+lazy-r1+2-d-steps": 2}
STATE_KEYS = ("step", "generator", "discriminator", "opt_g", "opt_d", "regularizers", "batches", "rng")


def plugins_with(*extra: tuple[str, object]) -> Plugins:
    """Every installed plugin plus ``extra``; datasets load once per session.

    ``monitors`` is added by hand if its entry point was not found (a stale
    ``ganforge.egg-info`` on sys.path can hide it), so these tests always run with it.
    """
    plugins = Plugins(extra=extra)
    if "monitors" not in plugins.registry.plugins:
        plugins = Plugins(extra=[("monitors", ganforge_monitors), *extra])
    plugins.registry = caching_registry(plugins.registry)
    return plugins


def case_config(case: str, out: Path) -> RunConfig:
    return RunConfig.model_validate({**CASES[case], "device": "cpu", "log_every": 1, "metrics": [], "out": str(out)})


@pytest.fixture()
def samples_drawn(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the monitors' draws from G, to show they happened; these runs are shorter than
    the monitors' warm-up, so it is off."""
    monkeypatch.setattr(ganforge_monitors, "SETTINGS", monitors.Settings(warmup_steps=0))
    calls: list[int] = []
    original = monitors.sample_spread

    def counting(run: Any, n: int) -> float:
        calls.append(n)
        return original(run, n)

    monkeypatch.setattr(monitors, "sample_spread", counting)
    return calls


@pytest.mark.parametrize("case", list(CASES))
def test_resume_after_a_signal_is_bit_identical_to_a_run_never_stopped(
    case: str, tmp_path: Path, samples_drawn: list[int]
) -> None:
    steps, stop = CASES[case]["steps"], STOP_AT[case]
    assert "monitors" in plugins_with().registry.plugins

    reference = train(case_config(case, tmp_path / "reference"), plugins=plugins_with(), quiet=True)
    assert reference.step == steps

    stopped = tmp_path / "stopped"
    with pytest.raises(Interrupted) as interrupted:
        train(case_config(case, stopped), plugins=plugins_with(("stop", SignalAt(stop))), quiet=True)
    assert interrupted.value.exit_code == 130
    assert ckpt.load_safe(ckpt.checkpoint_path(stopped, stop))["step"] == stop
    assert logged_steps(stopped) == list(range(1, stop + 1))

    drawn_before_resume = len(samples_drawn)
    resumed = train(None, resume=stopped, plugins=plugins_with(), quiet=True)
    assert resumed.step == steps
    assert len(samples_drawn) > drawn_before_resume >= 2, "the monitors must sample G in every run segment"

    want, got = ckpt.load_safe(reference.checkpoint), ckpt.load_safe(resumed.checkpoint)
    for key in STATE_KEYS:
        assert_identical(want[key], got[key], key)

    # The log: one record per step, and the same losses as the run never stopped.
    assert logged_steps(stopped) == list(range(1, steps + 1))
    assert statistics(stopped) == statistics(tmp_path / "reference")


def statistics(run_dir: Path) -> list[dict[str, float]]:
    """The logged statistics, less the throughput (which is timing, not training)."""
    return [{k: v for k, v in r.items() if k != "img/s"} for r in records(run_dir) if "event" not in r]


def test_resume_after_a_crash_drops_log_records_past_the_checkpoint(tmp_path: Path) -> None:
    """A crash between logging a step and checkpointing it (or mid-line) must not leave
    duplicate or torn records once the run is resumed."""
    out = tmp_path / "run"
    train(tiny_config(out, steps=8, log_every=1, checkpoint_every=3), plugins=plugins_with(), quiet=True)
    # As if killed after step 8 was logged but before its checkpoint landed, mid-way
    # through writing a record of a step that never finished.
    ckpt.checkpoint_path(out, 8).unlink()
    with (out / "metrics.jsonl").open("a") as log:
        log.write('{"loss/d": 1.3, "step": 9, "loss/g"')
    result = train(None, resume=out, overrides={"steps": 10}, plugins=plugins_with(), quiet=True)
    assert result.step == 10
    assert logged_steps(out) == list(range(1, 11))


class Recorder:
    """Records the lifecycle hooks a run calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    @hookimpl
    def ganforge_train_start(self, run: Any) -> None:
        self.calls.append(("start", run.start_step))

    @hookimpl
    def ganforge_checkpoint_saved(self, run: Any, step: int, path: Path) -> None:
        self.calls.append(("checkpoint", step))

    @hookimpl
    def ganforge_train_end(self, run: Any, step: int, results: dict[str, float]) -> None:
        self.calls.append(("end", step))


@pytest.fixture()
def interactive_sigint():
    """SIGINT as in a terminal (Python's default_int_handler), whatever this process inherited:
    a job started in the background by a non-interactive shell begins with SIGINT ignored."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


@pytest.mark.usefixtures("interactive_sigint")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_checkpoints_and_stops_with_128_plus_the_signal(signum: int, tmp_path: Path) -> None:
    out, recorder = tmp_path / "run", Recorder()
    plugins = plugins_with(("stop", SignalAt(3, signum)), ("recorder", recorder))
    with pytest.raises(Interrupted) as interrupted:
        train(tiny_config(out, steps=50, log_every=1), plugins=plugins, quiet=True)
    assert interrupted.value.exit_code == 128 + signum
    message = str(interrupted.value)
    assert str(ckpt.checkpoint_path(out, 3)) in message and f"ganforge run --resume {out}" in message
    assert ("checkpoint", 3) in recorder.calls
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handlers are restored"


def test_train_end_is_called_when_a_signal_stops_the_run(tmp_path: Path) -> None:
    """hookspecs: ganforge_train_end is 'called once when training stops, normally or by a
    signal', so a logger can flush and close what it opened."""
    recorder = Recorder()
    plugins = plugins_with(("stop", SignalAt(3)), ("recorder", recorder))
    with pytest.raises(Interrupted):
        train(tiny_config(tmp_path / "run", steps=50, log_every=1), plugins=plugins, quiet=True)
    assert recorder.calls == [("start", 0), ("checkpoint", 3), ("end", 3)]


class SignalTwice:
    """Sends SIGINT twice at one step: the second must act at once."""

    @hookimpl
    def ganforge_step_end(self, run: Any, step: int, stats: dict[str, float]) -> None:
        if step == 2:
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)


@pytest.mark.usefixtures("interactive_sigint")
def test_a_second_sigint_stops_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(out, steps=50, log_every=1), plugins=plugins_with(("twice", SignalTwice())), quiet=True)
    assert ckpt.list_checkpoints(out) == [], "the second signal does not wait for a checkpoint"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
