"""ganforge_core.testing catches what it claims to: each check fails, with its reason, on a broken component.

The contract tests (test_contract.py, test_isolation.py) show that the checks pass
on every registered component; these show that they are not vacuous. Broken
components are registered in-process, as a plugin author's would be before packaging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ConfigDict, Field
from torch import Tensor, nn

from ganforge_core import Loss, Options, Regularizer, hookimpl
from ganforge_core.plugins import Plugins
from ganforge_core.testing import (
    build_context,
    check_component,
    check_discriminator,
    check_generator,
    check_isolation,
    check_loss,
    check_options,
    check_regularizer,
    smoke_train,
)

RING = {"generator": "mlp", "dataset": "ring-8"}


class GoodOptions(Options):
    width: int = Field(8, ge=1, description="units")


class Undescribed(Options):
    width: int = 8


class AcceptsAnything(Options):
    model_config = ConfigDict(extra="allow", frozen=True)


class DetachedLoss(Loss):
    """A G loss that does not reach G: the generator would never learn."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: Any) -> Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: Tensor, ctx: Any) -> Tensor:
        return fake_logits.detach().mean() * 0 + 1.0


class LeakyPenalty(Regularizer):
    """A D penalty that reads G's weights: D's loss then sends gradients into G."""

    def wrap_generator(self, generator: nn.Module) -> nn.Module:
        self.generator = generator
        return generator

    def d_penalty(self, ctx: Any) -> Tensor:
        return 1e-3 * sum(p.square().sum() for p in self.generator.parameters())


class ForgetfulNoise(Regularizer):
    """Noise from a private generator whose state is not checkpointed: a resumed run differs."""

    def __init__(self) -> None:
        self.noise = torch.Generator().manual_seed(0)

    def transform_d_input(self, x: Tensor, progress: float) -> Tensor:
        return x + 0.1 * torch.randn(x.shape, generator=self.noise)


class DetachedGPenalty(Regularizer):
    """A lazy G penalty computed on detached samples: it would never move G."""

    g_penalty_every = 2

    def g_penalty(self, ctx: Any) -> Tensor:
        return ctx.fake.detach().square().mean()


class NoInterval(Regularizer):
    """A penalty interval of 0: the engine could never schedule it."""

    d_penalty_every = 0


class Broken:
    @hookimpl
    def ganforge_register_losses(self, register: Any) -> None:
        register("detached", lambda o, ctx: DetachedLoss(), summary="a G loss with no gradient")
        register("undescribed", lambda o, ctx: DetachedLoss(), options=Undescribed, summary="x")
        register("anything", lambda o, ctx: DetachedLoss(), options=AcceptsAnything, summary="x")
        register("Bad Name", lambda o, ctx: DetachedLoss(), summary="x")

    @hookimpl
    def ganforge_register_regularizers(self, register: Any) -> None:
        register("leaky-penalty", lambda o, ctx: LeakyPenalty(), summary="a penalty that reaches G")
        register("forgetful-noise", lambda o, ctx: ForgetfulNoise(), summary="noise without state")


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins(extra=[("broken", Broken())])


def test_options_without_descriptions_fail(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match=r"loss 'undescribed': options without Field\(description=...\): width"):
        check_options(plugins.registry.get("loss", "undescribed"))


def test_options_that_accept_unknown_keys_fail(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match="must forbid unknown keys"):
        check_component("loss", "anything", plugins=plugins)


def test_a_component_the_registry_refused_fails_with_the_reason(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match="unknown loss 'Bad Name'.*names are lower-case"):
        check_component("loss", "Bad Name", plugins=plugins)


def test_a_g_loss_without_gradient_fails(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match="g_loss has no graph back to G"):
        check_loss(DetachedLoss())
    with pytest.raises(AssertionError, match="loss 'detached' with a batch of 1: g_loss"):
        check_component("loss", "detached", plugins=plugins)


def test_a_generator_of_the_wrong_shape_fails() -> None:
    class Flat(nn.Module):
        z_dim = 4

        def forward(self, z: Tensor) -> Tensor:
            return z

    with pytest.raises(AssertionError, match=r"gave shape \[5, 4\] for 5 latents; expected \[5, 2\]"):
        check_generator(Flat(), (2,), 5)


def test_a_discriminator_with_a_column_of_logits_fails() -> None:
    with pytest.raises(AssertionError, match=r"gave shape \[5, 1\] for a batch of 5; expected \[5\]"):
        check_discriminator(nn.Linear(2, 1), torch.randn(5, 2))


def test_a_g_penalty_without_gradient_or_a_bad_interval_fails() -> None:
    real = torch.randn(4, 2)
    check_regularizer(Regularizer(), real)  # every method optional: the base class passes
    with pytest.raises(AssertionError, match="g_penalty has no graph back to G"):
        check_regularizer(DetachedGPenalty(), real)
    with pytest.raises(AssertionError, match="d_penalty_every must be an int of at least 1, got 0"):
        check_regularizer(NoInterval(), real)


def test_a_penalty_that_reaches_g_breaks_isolation(plugins: Plugins) -> None:
    check_isolation(**RING, plugins=plugins)  # without it, the same run is isolated
    with pytest.raises(AssertionError, match="D phase: G grads"):
        check_isolation(**RING, regularizers=["leaky-penalty"], plugins=plugins)


def test_state_left_out_of_the_checkpoint_breaks_exact_resume(plugins: Plugins, tmp_path: Path) -> None:
    smoke_train(**RING, regularizers=["forgetful-noise"], plugins=plugins, check_resume=False, out=tmp_path / "a")
    with pytest.raises(AssertionError, match="resumed run: (generator|discriminator).* changed"):
        smoke_train(**RING, regularizers=["forgetful-noise"], plugins=plugins, out=tmp_path / "b")


def test_build_context_fills_every_field_a_factory_reads() -> None:
    ctx = build_context((3, 8, 8), num_classes=10)
    assert (ctx.data_shape, ctx.d_input_shape, ctx.num_classes, ctx.device.type) == ((3, 8, 8), (3, 8, 8), 10, "cpu")
