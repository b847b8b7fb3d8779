"""The plugin's own tests. ganforge's contract tests cover the rest once it is installed."""

from __future__ import annotations

import math

import pytest
import torch
from ganforge_core import BuildContext, DContext, GContext, Targets, get_registry
from torch import nn

from ganforge_rsgan.generator import ResMLPOptions, build_generator
from ganforge_rsgan.loss import RelativisticStandardLoss


def d_context() -> DContext:
    batch = torch.zeros(4, 2)
    return DContext(nn.Identity(), real=batch, fake=batch, targets=Targets(), step=0, progress=0.0)


def build_context(data_shape: tuple[int, ...]) -> BuildContext:
    return BuildContext(
        data_shape=data_shape, num_classes=0, total_steps=1, batch_size=4, device=torch.device("cpu"), seed=0
    )


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
@pytest.mark.parametrize("batch", [1, 5])
def test_resmlp_maps_latents_to_samples_of_the_data_shape(data_shape: tuple[int, ...], batch: int) -> None:
    generator = build_generator(ResMLPOptions(width=16), build_context(data_shape))
    samples = generator(torch.randn(batch, generator.z_dim))
    assert samples.shape == (batch, *data_shape)
    if len(data_shape) == 3:
        assert samples.abs().max() <= 1.0
