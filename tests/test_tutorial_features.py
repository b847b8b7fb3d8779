"""What users of the classic GAN tutorials expect: D's accuracy on real and fake
batches, runs measured in epochs, and progress bars on every long wait."""

from __future__ import annotations

import tempfile
from pathlib import Path
import pytest
import torch
from torch import Tensor, nn

from ganforge_core import RunConfig, resolve
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
