"""R3GAN (plugins/ganforge_r3gan): the RpGAN loss's values, R1 and R2 together in D's gradient, the
networks' contract and shapes, and the ramps of the r3gan-stacked-mnist preset at its start and end."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from ganforge_core import DContext, GContext, RunConfig, Targets, get_registry, presets, resolve
from ganforge_core.components import ResolveContext
from ganforge_core.plugins import get_plugins
from ganforge_core.session import Run
from ganforge_core.testing import build_context, check_component

REGISTRY = get_registry()
RUN_DIR = Path(tempfile.gettempdir()) / "ganforge-r3gan-never-written"


def build(kind: str, name: str, data_shape: tuple[int, ...] = (2,), **options: Any) -> Any:
    component = REGISTRY.get(kind, name)
    return component.build(component.validate(options, ResolveContext()), build_context(data_shape, total_steps=100))


# -- the RpGAN loss --------------------------------------------------------------------------


def test_rpgan_values_for_known_logits() -> None:
    loss = build("loss", "rpgan")
    real, fake = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 1.0, 1.0])
    ctx = DContext(nn.Identity(), real, fake, Targets(), step=0, progress=0.0)
    # D: mean softplus(-(real_i - fake_i)), differences 2, -1, -2: by hand
    # (log(1 + e^-2) + log(1 + e) + log(1 + e^2)) / 3 = (0.1269 + 1.3133 + 2.1269) / 3.
    d_by_hand = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1)) + math.log(1 + math.exp(2))) / 3
    assert float(loss.d_loss(real, fake, ctx)) == pytest.approx(d_by_hand, rel=1e-6)
    assert float(loss.d_loss(real, fake, ctx)) == pytest.approx(1.1890, abs=1e-4)
    # G: mean softplus(-(fake_i - real_i)) = (2.1269 + 0.3133 + 0.1269) / 3.
    g_ctx = GContext(real_logits=lambda: real, targets=Targets(), step=0, progress=0.0)
    assert float(loss.g_loss(fake, g_ctx)) == pytest.approx(0.8557, abs=1e-4)
    # Pairing, not averaging (RaSGAN): permuting the fakes (differences 1, -1, -1) changes the loss.
    assert float(loss.d_loss(real, fake.flip(0), ctx)) == pytest.approx(0.9799, abs=1e-4)
    assert loss.decision_threshold is None


def test_rpgan_g_loss_falls_as_fakes_rise_above_their_reals() -> None:
    loss = build("loss", "rpgan")
    real = torch.tensor([0.5, -0.5, 1.0])
    ctx = GContext(real_logits=lambda: real, targets=Targets(), step=0, progress=0.0)
    fake = torch.zeros(3, requires_grad=True)
    loss.g_loss(fake, ctx).backward()
    assert fake.grad is not None and bool((fake.grad < 0).all()), "G must gain by raising D(G(z))"
    assert float(loss.g_loss(real + 3, ctx)) < float(loss.g_loss(real, ctx)) < float(loss.g_loss(real - 3, ctx))
    # At D(G(z_i)) = D(x_i) every pair is a coin toss: log 2.
    assert float(loss.g_loss(real.clone(), ctx)) == pytest.approx(math.log(2), rel=1e-6)


def test_rpgan_is_not_the_relativistic_average_loss() -> None:
    real, fake = torch.tensor([2.0, -2.0]), torch.tensor([-2.0, 2.0])
    ctx = DContext(nn.Identity(), real, fake, Targets(), step=0, progress=0.0)
    rp, ra = build("loss", "rpgan"), build("loss", "relativistic")
    assert float(rp.d_loss(real, fake, ctx)) != pytest.approx(float(ra.d_loss(real, fake, ctx)), rel=1e-3)


# -- R1 and R2 together ----------------------------------------------------------------------


def input_gradients(critic: nn.Module, x: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad


def both_penalties(gamma1: float, gamma2: float) -> Run:
    config = RunConfig.model_validate({
        "dataset": "grid-25:n=256",
        "generator": "mlp:hidden=16,depth=1",
        "discriminator": "mlp:hidden=16,depth=1",
        "loss": "rpgan",
        "regularizers": [f"r1:gamma={gamma1}", f"r2:gamma={gamma2}"],
        "batch_size": 16,
        "steps": 10,
    })
    return Run(resolve(config, REGISTRY), get_plugins(), RUN_DIR)


@pytest.mark.parametrize(("gamma1", "gamma2"), [(3.0, 7.0), (0.0, 5.0), (4.0, 0.0)])
def test_r1_and_r2_together_reach_d_as_autograd_of_both(gamma1: float, gamma2: float) -> None:
    torch.manual_seed(0)
    run = both_penalties(gamma1, gamma2)
    real = run.engine.batches.draw().samples
    critic = run.discriminator
    torch.manual_seed(5)
    with torch.no_grad():
        fake = run.generator(torch.randn(real.shape[0], run.engine.z_dim))
    real_logits, fake_logits = critic(real), critic(fake)
    objective = torch.nn.functional.softplus(fake_logits - real_logits).mean()
    # Mescheder et al. 2018, eqs. 9 and 10: zero-centred, each at its own batch.
    objective = objective + gamma1 / 2 * input_gradients(critic, real).square().sum(1).mean()
    objective = objective + gamma2 / 2 * input_gradients(critic, fake).square().sum(1).mean()
    params = list(critic.parameters())
    want = torch.autograd.grad(objective, params, allow_unused=True, materialize_grads=True)
    for p in params:
        p.grad = None
    torch.manual_seed(5)
    run.engine.d_phase(real, 0)
    for (name, p), w in zip(critic.named_parameters(), want, strict=True):
        assert p.grad is not None, f"D's {name} got no gradient"
        torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"D's {name}: {m}")


def test_both_penalties_are_zero_centred() -> None:
    # A linear critic D(x) = w.x has the input gradient w everywhere: R1 = R2 = |w|^2 * gamma / 2,
    # which vanishes at w = 0 (zero-centred), where WGAN-GP's (|w| - 1)^2 would be 1.
    for name in ("r1", "r2"):
        penalty = build("regularizer", name, gamma=2.0)
        for w, expected in ((torch.zeros(2), 0.0), (torch.tensor([3.0, 4.0]), 25.0)):
            critic = nn.Linear(2, 1, bias=False)
            critic.weight.data = w[None]
            ctx = DContext(lambda x, c=critic: c(x).flatten(), torch.randn(8, 2), torch.randn(8, 2), Targets(), 0, 0.0)
            assert float(penalty.d_penalty(ctx).detach()) == pytest.approx(expected, abs=1e-6), name


# -- the networks ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["generator", "discriminator"])
def test_the_networks_meet_the_contract(kind: str) -> None:
    check_component(kind, "r3gan", datasets=["mnist-5k:size=16", "stacked-mnist:size=16"])


@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 28), (1, 32), (3, 64), (1, 30)])
def test_any_square_image_shape(channels: int, side: int) -> None:
    from ganforge_r3gan.networks import R3GANDiscriminator, R3GANGenerator
    from ganforge_r3gan.options import DiscriminatorOptions, GeneratorOptions

    g = R3GANGenerator(GeneratorOptions(width=8, z_dim=4), channels, side, num_classes=3)
    d = R3GANDiscriminator(DiscriminatorOptions(width=8), channels, side, num_classes=3)
    labels = torch.tensor([0, 1, 2])
    x = g(torch.randn(3, 4), labels)
    assert list(x.shape) == [3, channels, side, side]
    assert list(d(x, labels).shape) == [3]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm) for m in [*g.modules(), *d.modules()])


def test_blocks_start_as_the_identity_and_resampling_keeps_a_constant() -> None:
    from ganforge_r3gan.networks import Resample, ResidualBlock
    from ganforge_r3gan.options import GeneratorOptions

    block = ResidualBlock(GeneratorOptions(width=8), total_blocks=4)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block(x), x)  # fix-up: the last convolution starts at 0
    flat = torch.full((1, 2, 8, 8), 3.0)
    up, down = Resample(up=True)(flat), Resample(up=False)(flat)
    assert list(up.shape) == [1, 2, 16, 16] and list(down.shape) == [1, 2, 4, 4]
    # Away from the zero-padded border, interpolation keeps a constant map constant.
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 3.0))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 3.0))


# -- the preset's ramps ------------------------------------------------------------------------


def test_the_preset_ramps_lr_gamma_and_the_ema_half_life_from_start_to_end() -> None:
    plan = resolve(RunConfig.model_validate(presets.load("r3gan-stacked-mnist")), REGISTRY)
    config, steps = plan.config, plan.config.steps
    ctx = build_context((3, 28, 28), total_steps=steps)
    scheduler = REGISTRY.get("scheduler", config.scheduler.name)
    schedule = scheduler.build(scheduler.validate(config.scheduler.options), ctx)
    # R3GAN's lr: 2e-4 at the start, 5e-5 at the end, on a cosine.
    assert config.lr_d * schedule.lr_multiplier(0, steps) == pytest.approx(2e-4)
    assert config.lr_d * schedule.lr_multiplier(steps - 1, steps) == pytest.approx(5e-5)
    assert config.lr_d * schedule.lr_multiplier((steps - 1) // 2, steps) == pytest.approx(1.25e-4, rel=1e-3)
    assert config.betas[0] == 0.0
    by_name = {c.name: REGISTRY.get("regularizer", c.name).validate(c.options) for c in config.regularizers}
    for name in ("r1", "r2"):  # gamma 0.05 -> 0.005 as R3GAN's CIFAR-10 preset
        options = by_name[name]
        assert options.gamma * options.strength(0.0) == pytest.approx(0.05)
        assert options.gamma * options.strength(1.0) == pytest.approx(0.005)
        assert options.gamma * options.strength(0.5) == pytest.approx(0.0275)
    ema = by_name["ema"]
    assert ema.ramp == steps
    assert ema.decay_at(0) == 0.0  # half-life 0: the average is G itself
    assert ema.decay_at(steps) == ema.decay
    half_life = math.log(0.5) / math.log(ema.decay)
    assert math.log(0.5) / math.log(ema.decay_at(steps // 2)) == pytest.approx(half_life / 2, rel=1e-6)
    # On a cosine, not a line: a quarter of the way it is (1 - cos(pi / 4)) / 2 = 0.146 of the end's.
    assert math.log(0.5) / math.log(ema.decay_at(steps // 4)) == pytest.approx(half_life * 0.14645, rel=1e-4)


def test_the_ema_ramp_sets_the_weight_of_each_update() -> None:
    ema = build("regularizer", "ema", decay=0.99, ramp=4)
    g = nn.Linear(1, 1, bias=False)
    ema.wrap_generator(g)
    for step, value in enumerate((1.0, 2.0, 3.0, 4.0, 5.0)):
        g.weight.data.fill_(value)
        before = float(ema.sampling_generator().weight) if step else 0.0
        ema.after_g_step(g, step)
        decay = ema.options.decay_at(step)
        assert float(ema.sampling_generator().weight) == pytest.approx(decay * before + (1 - decay) * value)
    assert ema.options.decay_at(0) == 0.0 and ema.options.decay_at(4) == 0.99
    assert "graph-safe" not in REGISTRY.get("regularizer", "ema").traits(ema.options)


@pytest.mark.parametrize("up", [True, False])
def test_resampling_filters_each_channel_alone_and_keeps_the_layout(up: bool) -> None:
    import torch.nn.functional as F

    from ganforge_r3gan.networks import Resample, _binomial_kernel

    x = torch.randn(3, 5, 8, 8).contiguous(memory_format=torch.channels_last)
    out = Resample(up)(x)
    flat, kernel = x.reshape(15, 1, 8, 8), _binomial_kernel()[None, None]  # channels folded into the batch
    want = F.conv_transpose2d(flat, 4 * kernel, stride=2, padding=1) if up else F.conv2d(flat, kernel, stride=2, padding=1)
    torch.testing.assert_close(out, want.reshape(3, 5, *want.shape[-2:]))
    assert out.shape[-1] == (16 if up else 4)
    assert out.is_contiguous(memory_format=torch.channels_last)  # no copy out of the layout and back
