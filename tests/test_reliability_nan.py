"""A NaN stops the run at once, names the phase and the step, and never reaches a checkpoint.

A test plugin provides the loss ``nan-at``: the non-saturating loss, except that
one phase of one chosen step returns NaN. In-process, ``train`` raises
``TrainingDiverged``; through the command line (the plugin installed as a
distribution, found through its entry point like any package) the exit status is
3 with one ``error:`` line.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from ganforge_core import TrainingDiverged
from ganforge_core import checkpoint as ckpt
from ganforge_core.plugins import ALLOW_LIST_VARIABLE, Plugins, reset
from ganforge_core.session import train
from test_reliability import all_finite, assert_one_error_line, install_plugin, run_cli, tiny_config


NAN_PLUGIN = '''
"""Test plugin: a loss that returns NaN in one phase of one step."""
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ganforge_core import Loss, Options, hookimpl


class NanAtOptions(Options):
    step: int = Field(3, ge=0, description="0-based index of the step whose loss is NaN")
    phase: Literal["D", "G"] = Field("D", description="the phase whose loss is NaN")


def _bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class NanAt(Loss):
    def __init__(self, options):
        self.options = options

    def _maybe_nan(self, loss, phase, step):
        hit = self.options.phase == phase and step == self.options.step
        return loss * float("nan") if hit else loss

    def d_loss(self, real_logits, fake_logits, ctx):
        return self._maybe_nan(_bce(real_logits, 1.0) + _bce(fake_logits, 0.0), "D", ctx.step)

    def g_loss(self, fake_logits, ctx):
        return self._maybe_nan(_bce(fake_logits, 1.0), "G", ctx.step)


@hookimpl
def ganforge_register_losses(register):
    register(
        "nan-at",
        lambda options, ctx: NanAt(options),
        options=NanAtOptions,
        summary="non-saturating, but NaN in one phase of one step (tests)",
        traits={"targets"},
    )
'''


def nan_plugin() -> types.ModuleType:
    module = types.ModuleType("ganforge_test_nan")
    exec(compile(NAN_PLUGIN, "ganforge_test_nan.py", "exec", dont_inherit=True), module.__dict__)
    return module


@pytest.mark.parametrize("phase", ["D", "G"])
def test_a_nan_loss_stops_the_run_naming_phase_and_step(phase: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tiny_config(
        out, loss=f"nan-at:step=5,phase={phase}", steps=30, log_every=4, checkpoint_every=1, keep_checkpoints=3
    )
    with pytest.raises(TrainingDiverged) as diverged:
        train(config, plugins=Plugins(extra=[("nan-loss", nan_plugin())]), quiet=True)
    message = str(diverged.value)
    assert diverged.value.exit_code == 3
    assert len(message.splitlines()) == 1, message
    # The step with index 5 is the 6th step: step 6, as metrics.jsonl counts them.
    assert f"{phase} phase of step 6" in message, message

    kept = ckpt.list_checkpoints(out)
    assert kept, "the checkpoints before the failure are kept"
    newest = ckpt.load_safe(kept[-1])
    assert newest["step"] == 5, "the newest checkpoint is the last step before the failure"
    assert str(kept[-1]) in message, "the message says where the last good checkpoint is"
    for key in ("generator", "discriminator", "opt_g", "opt_d"):
        assert all_finite(newest[key]), f"a non-finite value reached the checkpoint ({key})"
    assert all(record["step"] <= 5 for record in _stat_records(out))


def _stat_records(out: Path) -> list[dict]:
    import json

    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "event" not in r]


def test_a_nan_through_the_cli_is_exit_status_3_and_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    site = install_plugin(tmp_path / "site", "nan-loss", "ganforge_test_nan", NAN_PLUGIN)
    out = tmp_path / "run"
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(ALLOW_LIST_VARIABLE, raising=False)
    reset()
    try:
        code, stderr = run_cli(
            monkeypatch, capsys, "run", "--gen", "mlp:hidden=16,depth=1", "--disc", "mlp:hidden=16,depth=1",
            "--data", "ring-8:n=512", "--device", "cpu", "--loss", "nan-at:step=2", "--steps", "20",
            "--checkpoint-every", "1", "--out", out, "-q",
        )  # fmt: skip
    finally:
        monkeypatch.undo()
        reset()  # the process-wide plugins, without the test plugin
    assert code == 3, stderr
    assert_one_error_line(stderr, "D phase of step 3", str(ckpt.checkpoint_path(out, 2)))
    assert ckpt.latest_loadable(out)[1]["step"] == 2


@pytest.mark.parametrize("phase", ["D", "G"])
def test_on_nan_skip_drops_that_update_counts_it_and_trains_on(phase: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tiny_config(out, loss=f"nan-at:step=5,phase={phase}", steps=12, log_every=4, on_nan="skip")
    plugins = Plugins(extra=[("nan-loss", nan_plugin())])

    result = train(config, plugins=plugins, quiet=True)

    assert result.step == 12
    final = ckpt.load_safe(result.checkpoint)
    for key in ("generator", "discriminator", "opt_g", "opt_d"):
        assert all_finite(final[key]), f"a skipped update still reached {key}"
    records = _stat_records(out)
    counted = {k: records[-1][f"skipped/{k.lower()}"] for k in ("D", "G")}
    assert counted == {"D": int(phase == "D"), "G": int(phase == "G")}
    assert all(r == r for record in records for r in record.values()), "a NaN reached metrics.jsonl"
    # The skipped update left its network's parameters exactly as the step before left them.
    network = "discriminator" if phase == "D" else "generator"
    six = train(tiny_config(tmp_path / "six", loss=config.loss, steps=6, on_nan="skip"), plugins=plugins, quiet=True)
    five = train(tiny_config(tmp_path / "five", loss=config.loss, steps=5, on_nan="skip"), plugins=plugins, quiet=True)
    after_skip, before_skip = ckpt.load_safe(six.checkpoint)[network], ckpt.load_safe(five.checkpoint)[network]
    parameters = [k for k in before_skip if "running_" not in k and "num_batches" not in k]
    assert parameters and all(torch.equal(after_skip[k], before_skip[k]) for k in parameters)
