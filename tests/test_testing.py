"""ganforge_core.testing catches what it claims to: each check fails, with its reason, on a broken component.

The contract tests (test_contract.py, test_isolation.py) show that the checks pass
on every registered component; these show that they are not vacuous. Broken
components are registered in-process, as a plugin author's would be before packaging.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field
from torch import Tensor, nn

from ganforge_core import Dataset, DContext, Loss, Options, Regularizer, hookimpl
from ganforge_core.penalties import fake_gradient_penalty, gradient_penalty, real_gradient_penalty
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
from ganforge_core.traits import builtin_registry
from fake_datasets import shared_fake_root
from support import FILE_OPTIONS

RING = {"generator": "mlp", "dataset": "ring-8"}
NUMBER = r"[-+]?[0-9.]+(?:e[-+]?[0-9]+)?"
BOTH_BATCHES = {"input-gradient-penalty", "penalty-on-real", "penalty-on-fake"}


def exactly(message: str) -> str:
    """A pattern that matches the whole of ``message``, each ``#`` standing for a number."""
    return "^" + NUMBER.join(re.escape(part) for part in message.split("#")) + "$"


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


class NonSaturating(Loss):
    """A correct loss, the base of the broken ones below."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: Any) -> Tensor:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits: Tensor, ctx: Any) -> Tensor:
        return F.softplus(-fake_logits).mean()


class FlippedDLoss(NonSaturating):
    """D's loss with its sign flipped: D would learn to call reals fake."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: Any) -> Tensor:
        return -super().d_loss(real_logits, fake_logits, ctx)


class FlippedGLoss(NonSaturating):
    """G's loss with its sign flipped: G would learn to look fake."""

    def g_loss(self, fake_logits: Tensor, ctx: Any) -> Tensor:
        return -super().g_loss(fake_logits, ctx)


class DetachedRealLoss(NonSaturating):
    """D's loss on detached real logits: D still trains, on fakes only."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: Any) -> Tensor:
        return super().d_loss(real_logits.detach(), fake_logits, ctx)


def penalty_without_graph(discriminator: Any, samples: Tensor) -> Tensor:
    """||grad_x D(x)||^2 with torch.autograd.grad lacking create_graph=True: a number, not a graph."""
    inputs = samples.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(inputs).sum(), inputs)
    return grad.square().flatten(1).sum(dim=1).mean()


class GPWithoutGraph(NonSaturating):
    """WGAN-GP's loss whose penalty is computed without create_graph=True: it never reaches D."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        between = (0.5 * (ctx.real + ctx.fake)).requires_grad_(True)
        (grad,) = torch.autograd.grad(ctx.discriminator(between).sum(), between)
        penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()
        return fake_logits.mean() - real_logits.mean() + 10.0 * penalty


class GPOnRealsLoss(NonSaturating):
    """A loss that declares WGAN-GP's penalty between the batches but computes R1 on the reals."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        return fake_logits.mean() - real_logits.mean() + 10.0 * real_gradient_penalty(ctx)


class R1WithoutGraph(Regularizer):
    """R1 computed without create_graph=True: D never feels it."""

    def d_penalty(self, ctx: DContext) -> Tensor:
        return 5.0 * penalty_without_graph(ctx.discriminator, ctx.real)


class Penalty(Regularizer):
    """A zero-centred penalty computed on the batch ``compute`` picks, whatever its traits say."""

    def __init__(self, compute: Any) -> None:
        self.compute = compute

    def d_penalty(self, ctx: DContext) -> Tensor:
        return 5.0 * self.compute(ctx)


class Critic(nn.Module):
    """A small D on flattened samples: ``mode`` "alone" scores each on its own; "batch-mean" subtracts
    the batch's mean logit (a minibatch statistic); "spectral" holds spectral norm (a buffer per call)."""

    def __init__(self, features: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.linear = nn.Linear(features, 1)
        if mode == "spectral":
            self.linear = nn.utils.spectral_norm(self.linear)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.linear(x.flatten(1)).squeeze(1)
        return logits - logits.mean() if self.mode == "batch-mean" else logits


def critic(mode: str) -> Any:
    return lambda o, ctx: Critic(math.prod(ctx.d_input_shape), mode)


class Broken:
    @hookimpl
    def ganforge_register_losses(self, register: Any) -> None:
        register("detached", lambda o, ctx: DetachedLoss(), summary="a G loss with no gradient")
        register("undescribed", lambda o, ctx: DetachedLoss(), options=Undescribed, summary="x")
        register("anything", lambda o, ctx: DetachedLoss(), options=AcceptsAnything, summary="x")
        register("Bad Name", lambda o, ctx: DetachedLoss(), summary="x")
        register("non-saturating-too", lambda o, ctx: NonSaturating(), summary="a correct loss")
        register("flipped-d", lambda o, ctx: FlippedDLoss(), summary="D's loss with its sign flipped")
        register("flipped-g", lambda o, ctx: FlippedGLoss(), summary="G's loss with its sign flipped")
        register("detached-real", lambda o, ctx: DetachedRealLoss(), summary="D's loss on detached reals")
        register("gp-without-graph", lambda o, ctx: GPWithoutGraph(), summary="x", traits=BOTH_BATCHES)
        register("gp-on-reals", lambda o, ctx: GPOnRealsLoss(), summary="x", traits=BOTH_BATCHES)

    @hookimpl
    def ganforge_register_regularizers(self, register: Any) -> None:
        register("leaky-penalty", lambda o, ctx: LeakyPenalty(), summary="a penalty that reaches G")
        register("forgetful-noise", lambda o, ctx: ForgetfulNoise(), summary="noise without state")
        register("r1-without-graph", lambda o, ctx: R1WithoutGraph(), summary="x", traits={"penalty-on-real"})
        register(
            "r1-too",
            lambda o, ctx: Penalty(real_gradient_penalty),
            summary="a correct R1",
            traits={"input-gradient-penalty", "penalty-on-real"},
        )
        register(
            "gp-too",
            lambda o, ctx: Penalty(gradient_penalty),
            summary="a correct WGAN-GP penalty",
            traits=BOTH_BATCHES,
        )
        register(
            "r2-on-reals",
            lambda o, ctx: Penalty(real_gradient_penalty),
            summary="declares R2, computes R1",
            traits={"input-gradient-penalty", "penalty-on-fake"},
        )
        register(
            "r1-on-fakes",
            lambda o, ctx: Penalty(fake_gradient_penalty),
            summary="declares R1, computes R2",
            traits={"input-gradient-penalty", "penalty-on-real"},
        )
        register(
            "somewhere",
            lambda o, ctx: Penalty(real_gradient_penalty),
            summary="an input-gradient penalty that does not say on which batch",
            traits={"input-gradient-penalty"},
        )

    @hookimpl
    def ganforge_register_discriminators(self, register: Any) -> None:
        for mode in ("alone", "batch-mean", "spectral"):
            register(f"per-sample-{mode}", critic(mode), summary=f"declares per-sample ({mode})", traits={"per-sample"})

    @hookimpl
    def ganforge_register_datasets(self, register: Any) -> None:
        # Pixels scaled to [0, 1] (the 2p - 1 forgotten), and the same pixels as ganforge wants them.
        pixels = torch.linspace(0, 1, 16 * 4 * 4).reshape(16, 1, 4, 4)
        register("unit-images", lambda o, ctx: Dataset(pixels), summary="images in [0, 1]", traits={"image"})
        register("signed-images", lambda o, ctx: Dataset(2 * pixels - 1), summary="x", traits={"image"})


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


# -- directions, penalties and data ranges that are wrong --------------------------------


def test_a_d_loss_with_its_sign_flipped_fails(plugins: Plugins) -> None:
    check_component("loss", "non-saturating-too", plugins=plugins)  # the same loss, unflipped, passes
    with pytest.raises(AssertionError, match=exactly(
        "loss 'flipped-d' with a batch of 1: d_loss rises as the real logits rise (slope #) and as the fake "
        "logits fall (slope #) at logits in [0.2, 0.8]: its sign is flipped; D's loss must fall as real logits "
        "rise and fake logits fall"
    )):
        check_component("loss", "flipped-d", plugins=plugins)


def test_a_g_loss_with_its_sign_flipped_fails(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match=exactly(
        "loss 'flipped-g' with a batch of 1: g_loss does not fall as the fake logits rise (slope # at fake "
        "logits in [-0.8, -0.2]): is its sign flipped? G's loss must fall as D scores G's samples higher"
    )):
        check_component("loss", "flipped-g", plugins=plugins)


def test_a_d_loss_that_detaches_the_real_logits_fails(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match=exactly(
        "loss 'detached-real' with a batch of 1: d_loss sends no gradient to the real logits (are they "
        "detached?): it cannot train on real samples"
    )):
        check_component("loss", "detached-real", plugins=plugins)


def test_a_loss_whose_gradient_penalty_has_no_graph_fails(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match=exactly(
        "loss 'gp-without-graph' with a batch of 1: d_loss changes with D's parameters at a rate of #, but the "
        "gradient it sends D gives #: part of it reaches D through no graph (was a gradient penalty's "
        "torch.autograd.grad called without create_graph=True, or something detached?)"
    )):
        check_component("loss", "gp-without-graph", plugins=plugins)


def test_a_loss_whose_penalty_is_on_the_wrong_batch_fails(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match=exactly(
        "loss 'gp-on-reals' with a batch of 1: d_loss's penalty is computed on the real batch, but it declares "
        "penalty-on-fake and penalty-on-real (both batches)"
    )):
        check_component("loss", "gp-on-reals", plugins=plugins)


def test_a_d_penalty_without_create_graph_fails(plugins: Plugins) -> None:
    check_component("regularizer", "r1-too", datasets=["ring-8"], plugins=plugins)
    with pytest.raises(AssertionError, match=exactly(
        "regularizer 'r1-without-graph' on dataset 'ring-8': d_penalty has no graph back to D's parameters, so "
        "it cannot train D: compute D's input gradient with torch.autograd.grad(..., create_graph=True)"
    )):
        check_component("regularizer", "r1-without-graph", datasets=["ring-8"], plugins=plugins)


def test_a_d_penalty_part_of_which_has_no_graph_fails() -> None:
    class HalfDetached(Regularizer):
        def d_penalty(self, ctx: DContext) -> Tensor:
            return real_gradient_penalty(ctx) + 5.0 * penalty_without_graph(ctx.discriminator, ctx.fake)

    with pytest.raises(AssertionError, match=exactly(
        "d_penalty changes with D's parameters at a rate of #, but the gradient it sends D gives #: part of it "
        "reaches D through no graph (was a gradient penalty's torch.autograd.grad called without "
        "create_graph=True, or something detached?)"
    )):
        check_regularizer(HalfDetached(), torch.randn(6, 2))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("r2-on-reals", "d_penalty is computed on the real batch, but it declares penalty-on-fake (the fake batch)"),
        ("r1-on-fakes", "d_penalty is computed on the fake batch, but it declares penalty-on-real (the real batch)"),
    ],
    ids=["r2-on-reals", "r1-on-fakes"],
)
def test_a_penalty_on_another_batch_than_declared_fails(plugins: Plugins, name: str, message: str) -> None:
    check_component("regularizer", "gp-too", datasets=["ring-8"], plugins=plugins)  # both batches, as declared
    with pytest.raises(AssertionError, match=exactly(f"regularizer '{name}' on dataset 'ring-8': {message}")):
        check_component("regularizer", name, datasets=["ring-8"], plugins=plugins)


def test_a_penalty_that_is_zero_where_it_is_checked_passes() -> None:
    # One-sided WGAN-GP penalises only gradient norms above 1; TinyCritic's are below, so the
    # penalty is 0 whatever either batch holds, which tells nothing about the batch it reads.
    component = BUILT_IN.get("regularizer", "gradient-penalty")
    options = component.validate({"penalty": "one-sided"})
    regularizer = component.build(options, build_context((2,)))
    check_regularizer(regularizer, torch.randn(6, 2), traits=component.traits(options))


def test_an_input_gradient_penalty_must_declare_its_batch(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match=exactly(
        "regularizer 'somewhere': declares input-gradient-penalty but not the batch its penalty is computed on: "
        "add the trait penalty-on-real (R1), penalty-on-fake (R2), or both (both batches, or between them as "
        "WGAN-GP's)"
    )):
        check_component("regularizer", "somewhere", plugins=plugins)


def test_images_in_zero_one_instead_of_minus_one_one_fail(plugins: Plugins) -> None:
    check_component("dataset", "signed-images", plugins=plugins)
    with pytest.raises(AssertionError, match=exactly(
        "dataset 'unit-images': image samples lie in [0, 1]: an image dataset spans [-1, 1] (pixels p in [0, 1] "
        "become 2p - 1), which G's tanh output and every image metric assume"
    )):
        check_component("dataset", "unit-images", plugins=plugins)


# -- the built-ins pass every check ---------------------------------------------------------

BUILT_IN = builtin_registry()


@pytest.mark.parametrize("name", [c.name for c in BUILT_IN.all("loss")])
def test_every_built_in_loss_meets_the_contract_and_points_the_right_way(name: str) -> None:
    # check_component checks a loss's direction in both phases, its D gradient and its penalty's batches.
    check_component("loss", name)


@pytest.mark.parametrize("name", [c.name for c in BUILT_IN.all("regularizer")])
def test_every_built_in_regularizer_meets_the_contract(name: str) -> None:
    check_component("regularizer", name)


@pytest.mark.parametrize("component", BUILT_IN.all("dataset"), ids=lambda c: c.name)
def test_every_built_in_dataset_meets_the_contract(component: Any) -> None:
    # Datasets read from files read the suite's tiny fake ones.
    options = {"root": str(shared_fake_root())} if "root" in component.options.model_fields else None
    options = FILE_OPTIONS.get(component.name, options)
    check_component("dataset", component.name, options=options)


# -- the trait per-sample: D main scores real and fake in one call only if D may -------------


def test_a_discriminator_that_scores_each_sample_alone_may_declare_per_sample(plugins: Plugins) -> None:
    check_component("discriminator", "per-sample-alone", plugins=plugins)


def test_a_discriminator_with_a_minibatch_statistic_must_not_declare_per_sample(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match=exactly(
        "discriminator 'per-sample-batch-mean' on dataset 'grid-25': per-sample: declares the trait 'per-sample' but scoring 6 "
        "samples in one call differs from scoring its halves apart (by #): its samples are not scored on their "
        "own (minibatch statistics, dropout?)"
    )):
        check_component("discriminator", "per-sample-batch-mean", plugins=plugins)


def test_a_discriminator_with_spectral_norm_must_not_declare_per_sample(plugins: Plugins) -> None:
    with pytest.raises(AssertionError, match=exactly(
        "discriminator 'per-sample-spectral' on dataset 'grid-25': per-sample: declares the trait 'per-sample' but a "
        "forward pass changed its state (linear.weight_v); BatchNorm and spectral norm change buffers at every call"
    )):
        check_component("discriminator", "per-sample-spectral", plugins=plugins)
