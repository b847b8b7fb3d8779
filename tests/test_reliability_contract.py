"""A component that breaks its contract at train time gets one error line naming plugin and component.

The engine checks what each component returns (host metadata only: shape and
dtype): losses and penalties a 0-dim floating tensor, G ``[N, *data_shape]``,
D ``[N]`` logits, penalty intervals ints >= 1. Through the CLI the breach is one
``error:`` line, exit status 2, no traceback.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ganforge_core.errors import ContractError
from ganforge_core.run import Run
from test_phases import build_run
from test_reliability import install_plugin, subprocess_env

GANFORGE = Path(sys.executable).parent / "ganforge"


def breaks_d_loss(run: Run) -> None:
    run.engine.loss.d_loss = lambda real, fake, ctx: torch.nn.functional.softplus(-real)  # type: ignore[method-assign]


def breaks_g_loss(run: Run) -> None:
    run.engine.loss.g_loss = lambda fake, ctx: torch.tensor(1)  # type: ignore[method-assign]


def breaks_generator(run: Run) -> None:
    forward = run.generator.forward
    run.generator.forward = lambda z: forward(z)[:, :1]  # type: ignore[method-assign]


def breaks_discriminator(run: Run) -> None:
    forward = run.discriminator.forward
    run.discriminator.forward = lambda x: forward(x).unsqueeze(1)  # type: ignore[method-assign]


def breaks_d_penalty(run: Run) -> None:
    run.regularizers["r1"].d_penalty = lambda ctx: (torch.tensor(1.0),)  # type: ignore[method-assign]


CASES: dict[str, tuple[Callable[[Run], None], str]] = {
    "d_loss": (
        breaks_d_loss,
        "plugin 'losses': loss 'non-saturating': d_loss returned a float32 tensor of shape [32]; "
        "a loss returns a scalar (0-dim) floating tensor",
    ),
    "g_loss": (
        breaks_g_loss,
        "plugin 'losses': loss 'non-saturating': g_loss returned a int64 tensor of shape []; "
        "a loss returns a scalar (0-dim) floating tensor",
    ),
    "generator": (
        breaks_generator,
        "plugin 'mlp': generator 'mlp': G returned a float32 tensor of shape [32, 1] for 32 latents; "
        "a generator returns floating samples of shape [32, 2] (the batch, then the dataset's sample shape)",
    ),
    "discriminator": (
        breaks_discriminator,
        "plugin 'mlp': discriminator 'mlp': D returned a float32 tensor of shape [32, 1] for 32 inputs; "
        "a discriminator returns one floating logit per input, shape [32]",
    ),
    "d_penalty": (
        breaks_d_penalty,
        "plugin 'regularizers': regularizer 'r1': d_penalty returned a tuple; "
        "a penalty returns None or a scalar (0-dim) floating tensor",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_component_is_named_with_its_plugin(case: str) -> None:
    breaks, message = CASES[case]
    run = build_run(["r1:every=2"])
    breaks(run)
    with pytest.raises(ContractError) as raised:
        run.engine.step(0)
    assert str(raised.value) == message
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("every", [0, 1.5, True, "2"])
def test_a_bad_penalty_interval_is_refused_when_the_engine_is_built(
    every: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganforge_regularizers.penalties import R1

    original = R1.__init__

    def init(self: R1, options: Any) -> None:
        original(self, options)
        self.d_penalty_every = every

    monkeypatch.setattr(R1, "__init__", init)
    with pytest.raises(ContractError) as raised:
        build_run(["r1"])
    assert str(raised.value) == (
        f"plugin 'regularizers': regularizer 'r1': d_penalty_every is {every!r}; "
        "a penalty interval is an int of at least 1"
    )


BROKEN_LOSSES = """
import torch
from ganforge_core import Loss, hookimpl


class Broken(Loss):
    def d_loss(self, real_logits, fake_logits, ctx):
        return torch.nn.functional.softplus(fake_logits)  # one value per sample: not a loss

    def g_loss(self, fake_logits, ctx):
        return torch.nn.functional.softplus(-fake_logits).mean()


@hookimpl
def ganforge_register_losses(register):
    register("broken", lambda options, ctx: Broken(), summary="a loss returning a vector")
"""


def test_through_the_cli_a_broken_loss_is_one_error_line_with_status_2(tmp_path: Path) -> None:
    site = install_plugin(tmp_path / "site", "my-losses", "ganforge_test_broken_losses", BROKEN_LOSSES)
    env = {**subprocess_env(), "PYTHONPATH": str(site)}
    result = subprocess.run(
        [str(GANFORGE), "run", "--gen", "mlp:hidden=8,depth=1", "--disc", "mlp:hidden=8,depth=1",
         "--data", "ring-8:n=256", "--loss", "broken", "--batch-size", "16", "--steps", "3",
         "--device", "cpu", "-q", "--out", str(tmp_path / "run")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.splitlines() == [
        "error: plugin 'my-losses': loss 'broken': d_loss returned a float32 tensor of shape [16]; "
        "a loss returns a scalar (0-dim) floating tensor"
    ]
