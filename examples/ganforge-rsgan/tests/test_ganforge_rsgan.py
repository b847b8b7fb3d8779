"""The plugin's own tests: ganforge's contract through ganforge_core.testing, then the loss's formula."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from ganforge_core import DContext, GContext, Targets, get_registry
from ganforge_core.testing import build_context, check_component, check_generator, check_isolation, smoke_train
from torch import nn

from ganforge_rsgan.generator import ResMLPOptions, build_generator
from ganforge_rsgan.loss import RelativisticStandardLoss

RSGAN_ON_RING = {"generator": "resmlp", "discriminator": "mlp", "loss": "rsgan", "dataset": "ring-8"}


def d_context() -> DContext:
    batch = torch.zeros(4, 2)
    return DContext(nn.Identity(), real=batch, fake=batch, targets=Targets(), step=0, progress=0.0)


@pytest.mark.parametrize(("kind", "name"), [("loss", "rsgan"), ("generator", "resmlp")])
def test_component_meets_the_ganforge_contract(kind: str, name: str) -> None:
    check_component(kind, name)


@pytest.mark.parametrize("regularizers", [[], ["r1"], ["label-smoothing", "ema"]])
def test_d_and_g_steps_stay_isolated(regularizers: list[str]) -> None:
    check_isolation(**RSGAN_ON_RING, regularizers=regularizers)


def test_trains_end_to_end_and_resumes_exactly(tmp_path: Path) -> None:
    result = smoke_train(**RSGAN_ON_RING, steps=4, out=tmp_path)
    assert set(result.results) >= {"mixture-modes/modes"}


def test_installed_plugin_provides_both_components() -> None:
    registry = get_registry()
    assert registry.get("loss", "rsgan").plugin == "rsgan"
    assert registry.get("generator", "resmlp").plugin == "rsgan"


def test_d_loss_is_log_2_when_critic_cannot_tell_real_from_fake() -> None:
    logits = torch.randn(8)
    loss = RelativisticStandardLoss().d_loss(logits, logits.clone(), d_context())
    assert loss.item() == pytest.approx(math.log(2))


def test_g_loss_is_d_loss_with_real_and_fake_swapped() -> None:
    real, fake = torch.randn(8), torch.randn(8)
    loss = RelativisticStandardLoss()
    g_ctx = GContext(real_logits=lambda: real, targets=Targets(), step=0, progress=0.0)
    assert loss.g_loss(fake, g_ctx).item() == pytest.approx(loss.d_loss(fake, real, d_context()).item())


@pytest.mark.parametrize("data_shape", [(2,), (1, 8, 8), (3, 4, 4)])
def test_resmlp_maps_latents_to_samples_of_any_data_shape(data_shape: tuple[int, ...]) -> None:
    generator = build_generator(ResMLPOptions(width=16), build_context(data_shape))
    for batch in (1, 5):
        check_generator(generator, data_shape, batch)
    if len(data_shape) == 3:  # images are scaled to [-1, 1]
        assert generator(torch.randn(5, generator.z_dim)).abs().max() <= 1.0
