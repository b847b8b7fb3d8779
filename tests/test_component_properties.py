"""Invariants of the built-in losses, regularizers and schedules, stated as hypothesis properties.

Losses: D's loss falls as real logits rise and fake logits fall, G's falls as
fake logits rise (where that holds). Penalties: a gradient penalty is zero
where D's gradient norm is one; R1 declares its lazy interval to the engine.
Networks: spectral norm leaves unit singular values; an EMA with decay 0 is G,
and its state resumes exactly. Inputs: one-sided label smoothing never touches
fake targets; instance noise follows its schedule; packing keeps the D and G
phases isolated; diffaugment shifts and erases as it says. Schedules stay in
[0, 1] and warm up from near 0.
"""

from __future__ import annotations

import copy
import io
import itertools
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from ganforge_core import DContext, GContext, ResolveContext, RunConfig, Targets, get_registry, resolve
from ganforge_core.errors import ContractError
from ganforge_core.plugins import get_plugins
from ganforge_core.session import Run
from ganforge_regularizers.penalties import R1Options
from support import build_context, caching_registry

REGISTRY = caching_registry()
FAST = settings(max_examples=30, deadline=None)
SLOW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(kind: str, name: str, data_shape: tuple[int, ...] = (2,), batch_size: int = 60, **options: Any) -> Any:
    component = REGISTRY.get(kind, name)
    validated = component.validate(options, ResolveContext(batch_size=batch_size))
    return component.build(validated, build_context(data_shape, total_steps=100, batch_size=batch_size))


class LinearCritic(nn.Module):
    """D(x) = w . x: its input gradient is w everywhere."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight


# -- losses ----------------------------------------------------------------------

# Where D's loss is monotone: (low, high) bounds for real and for fake logits.
# lsgan's squared distance to its targets falls only on the near side of each target.
MONOTONE_D = {
    "bce": ((-8, 8), (-8, 8)),
    "non-saturating": ((-8, 8), (-8, 8)),
    "relativistic": ((-8, 8), (-8, 8)),
    "rpgan": ((-8, 8), (-8, 8)),
    "hinge": ((-8, 8), (-8, 8)),
    "wgan": ((-8, 8), (-8, 8)),
    "wgan-gp": ((-8, 8), (-8, 8)),
    "lsgan": ((-4, 1), (0, 4)),
}
# Where G's loss falls as fake logits rise (lsgan: below its target c = 1).
MONOTONE_G = {name: fake for name, (_, fake) in MONOTONE_D.items()} | {"lsgan": (-4, 1), "bce": (-8, 8)}


def sorted_pairs(n: int, low: float, high: float) -> st.SearchStrategy[tuple[Tensor, Tensor]]:
    """Two logit vectors (lower, higher) with lower <= higher elementwise, both in [low, high]."""
    value = st.floats(low, high, allow_nan=False, width=32)
    pairs = st.lists(st.tuples(value, value).map(sorted), min_size=n, max_size=n)
    return pairs.map(lambda ps: (torch.tensor([p[0] for p in ps]), torch.tensor([p[1] for p in ps])))


def d_context(n: int) -> DContext:
    torch.manual_seed(0)
    critic = LinearCritic(torch.randn(2))
    return DContext(critic, torch.randn(n, 2), torch.randn(n, 2), Targets(), step=0, progress=0.0)


def d_loss_at(loss: Any, real: Tensor, fake: Tensor, ctx: DContext) -> float:
    torch.manual_seed(1)  # wgan-gp's interpolates: the same draws for every call, so its penalty cancels
    return float(loss.d_loss(real, fake, ctx).detach())


@pytest.mark.properties
@pytest.mark.parametrize("name", sorted(MONOTONE_D))
@FAST
@given(data=st.data(), n=st.integers(1, 6))
def test_d_loss_falls_as_real_logits_rise_and_fake_logits_fall(name, data, n) -> None:
    (real_low, real_high), (fake_low, fake_high) = MONOTONE_D[name]
    real, real_up = data.draw(sorted_pairs(n, real_low, real_high), label="real")
    fake_down, fake = data.draw(sorted_pairs(n, fake_low, fake_high), label="fake")
    loss, ctx = build("loss", name), d_context(n)
    before = d_loss_at(loss, real, fake, ctx)
    slack = 1e-5 * (1 + abs(before))
    assert d_loss_at(loss, real_up, fake, ctx) <= before + slack
    assert d_loss_at(loss, real, fake_down, ctx) <= before + slack
    assert d_loss_at(loss, real_up, fake_down, ctx) <= before + slack


@pytest.mark.properties
@pytest.mark.parametrize("name", sorted(MONOTONE_D))
def test_d_loss_is_strictly_better_for_a_clearly_better_discriminator(name) -> None:
    # Guards the weak inequalities above against a loss that ignores its inputs.
    (real_low, real_high), (fake_low, fake_high) = MONOTONE_D[name]
    loss, ctx = build("loss", name), d_context(3)
    confused = d_loss_at(
        loss, torch.full((3,), (real_low + real_high) / 2 - 1), torch.full((3,), (fake_low + fake_high) / 2 + 1), ctx
    )
    sure = d_loss_at(loss, torch.full((3,), float(real_high)), torch.full((3,), float(fake_low)), ctx)
    assert sure < confused


@pytest.mark.properties
@pytest.mark.parametrize("name", sorted(MONOTONE_G))
@FAST
@given(data=st.data(), n=st.integers(1, 6))
def test_g_loss_falls_as_fake_logits_rise(name, data, n) -> None:
    fake, fake_up = data.draw(sorted_pairs(n, *MONOTONE_G[name]), label="fake")
    real = torch.linspace(-1, 1, n)
    ctx = GContext(real_logits=lambda: real, targets=Targets(), step=0, progress=0.0)
    loss = build("loss", name)
    before, after = float(loss.g_loss(fake, ctx)), float(loss.g_loss(fake_up, ctx))
    assert after <= before + 1e-5 * (1 + abs(before))
    low, high = MONOTONE_G[name]
    assert float(loss.g_loss(torch.full((n,), float(high)), ctx)) < float(
        loss.g_loss(torch.full((n,), float(low)), ctx)
    )


@pytest.mark.properties
@FAST
@given(data=st.data(), n=st.integers(1, 6))
def test_relativistic_g_loss_is_the_d_loss_with_real_and_fake_swapped(data, n) -> None:
    # RaSGAN's G objective (Jolicoeur-Martineau 2018, eq. 9) mirrors D's: both terms, roles exchanged.
    real, fake = data.draw(sorted_pairs(n, -8, 8))
    loss = build("loss", "relativistic")
    g_ctx = GContext(real_logits=lambda: real, targets=Targets(), step=0, progress=0.0)
    d_ctx = DContext(nn.Identity(), real, fake, Targets(), step=0, progress=0.0)
    assert float(loss.g_loss(fake, g_ctx)) == pytest.approx(float(loss.d_loss(fake, real, d_ctx)), rel=1e-6)


@pytest.mark.properties
def test_relativistic_g_loss_compares_with_real_logits() -> None:
    loss, fake = build("loss", "relativistic"), torch.tensor([0.5, -0.5])
    calls: list[int] = []

    def g_loss_against(real: Tensor) -> float:
        def real_logits() -> Tensor:
            calls.append(1)
            return real

        return float(loss.g_loss(fake, GContext(real_logits, Targets(), step=0, progress=0.0)))

    assert g_loss_against(torch.tensor([3.0, 3.0])) > g_loss_against(torch.tensor([-3.0, -3.0]))
    assert len(calls) == 2


@pytest.mark.properties
@FAST
@given(clip=st.floats(1e-3, 1.0), scale=st.floats(0.0, 10.0), seed=st.integers(0, 2**16))
def test_wgan_clips_every_discriminator_parameter_after_its_step(clip, scale, seed) -> None:
    torch.manual_seed(seed)
    critic = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(scale)
    before = [p.detach().clone() for p in critic.parameters()]
    build("loss", "wgan", clip=clip).after_d_step(critic)
    for old, new in zip(before, critic.parameters(), strict=True):
        assert new.abs().max() <= clip
        torch.testing.assert_close(new, old.clamp(-clip, clip), rtol=0, atol=0)


# -- gradient penalties ----------------------------------------------------------------


def unit_critic_context(direction: list[float], norm: float, n: int, seed: int) -> DContext:
    torch.manual_seed(seed)
    weight = torch.tensor(direction, dtype=torch.float64)
    weight = weight / weight.norm() * norm
    shape = (n, 1, 2, 2)  # image-shaped, so the penalty's per-sample flattening is exercised
    real, fake = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    return DContext(LinearCritic(weight), real, fake, Targets(), step=0, progress=0.0)


DIRECTION = st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda v: sum(x * x for x in v) > 1e-2)


@pytest.mark.properties
@FAST
@given(direction=DIRECTION, norm=st.floats(0.0, 3.0), n=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_gradient_penalty_is_zero_exactly_where_the_gradient_norm_is_one(direction, norm, n, seed) -> None:
    two = build("regularizer", "gradient-penalty", weight=2.0)
    one = build("regularizer", "gradient-penalty", weight=2.0, penalty="one-sided")
    ctx = unit_critic_context(direction, norm, n, seed)
    assert float(two.d_penalty(ctx).detach()) == pytest.approx(2.0 * (norm - 1) ** 2, abs=1e-9)
    assert float(one.d_penalty(ctx).detach()) == pytest.approx(2.0 * max(norm - 1, 0.0) ** 2, abs=1e-9)
    at_one = unit_critic_context(direction, 1.0, n, seed)
    assert float(two.d_penalty(at_one).detach()) == pytest.approx(0.0, abs=1e-12)
    # wgan-gp's loss uses the same penalty: with equal logits only the penalty remains.
    logits = torch.zeros(n, dtype=torch.float64)
    assert float(build("loss", "wgan-gp").d_loss(logits, logits, ctx).detach()) == pytest.approx(
        10 * (norm - 1) ** 2, abs=1e-9
    )


@pytest.mark.properties
@FAST
@given(direction=DIRECTION, norm=st.floats(0.0, 3.0), gamma=st.floats(0.0, 20.0), every=st.integers(1, 5))
def test_r1_is_half_gamma_times_the_squared_gradient_norm_and_declares_its_lazy_interval(
    direction, norm, gamma, every
) -> None:
    r1 = build("regularizer", "r1", gamma=gamma, every=every)
    ctx = unit_critic_context(direction, norm, 3, 0)
    # The engine runs a lazy penalty in a phase of its own and multiplies it by the
    # interval (tests/test_phases.py); the penalty itself is the eager one at every step.
    assert r1.d_penalty_every == every and r1.g_penalty_every == 1
    for step in range(every + 1):
        penalty = r1.d_penalty(DContext(ctx.discriminator, ctx.real, ctx.fake, ctx.targets, step, step / 100))
        assert float(penalty.detach()) == pytest.approx(gamma / 2 * norm**2, rel=1e-9, abs=1e-12), step


@pytest.mark.properties
def test_r1_penalises_only_real_data() -> None:
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    torch.manual_seed(0)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    r1 = build("regularizer", "r1")
    base = float(r1.d_penalty(DContext(critic, real, fake, Targets(), 0, 0.0)).detach())
    assert base > 0
    assert float(r1.d_penalty(DContext(critic, real, fake * 100, Targets(), 0, 0.0)).detach()) == base


@pytest.mark.properties
@FAST
@given(direction=DIRECTION, norm=st.floats(0.0, 3.0), gamma=st.floats(0.0, 20.0), n=st.integers(1, 5))
def test_r2_is_half_gamma_times_the_squared_gradient_norm_at_fake_data(direction, norm, gamma, n) -> None:
    # D(x) = w.x has gradient w everywhere, so R2 = gamma/2 * ||w||^2 whatever the samples.
    ctx = unit_critic_context(direction, norm, n, 0)
    penalty = build("regularizer", "r2", gamma=gamma).d_penalty(ctx)
    assert float(penalty.detach()) == pytest.approx(gamma / 2 * norm**2, rel=1e-9, abs=1e-12)


@pytest.mark.properties
def test_r2_penalises_only_fake_data_and_its_gradient_reaches_d() -> None:
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    torch.manual_seed(0)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    r2 = build("regularizer", "r2")
    penalty = r2.d_penalty(DContext(critic, real, fake, Targets(), 0, 0.0))
    assert float(penalty.detach()) > 0
    assert float(r2.d_penalty(DContext(critic, real * 100, fake, Targets(), 0, 0.0)).detach()) == float(penalty)
    assert float(r2.d_penalty(DContext(critic, real, fake * 100, Targets(), 0, 0.0)).detach()) != float(penalty)
    penalty.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic[0].parameters())


# -- networks ------------------------------------------------------------------------


def largest_singular_value(module: nn.Module) -> float:
    weight = module.weight
    if isinstance(module, nn.ConvTranspose2d):
        weight = weight.transpose(0, 1)
    return float(torch.linalg.matrix_norm(weight.detach().flatten(1), ord=2))


@SLOW
@given(
    widths=st.lists(st.integers(1, 12), min_size=2, max_size=4),
    scale=st.floats(0.01, 100.0),
    iterations=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_spectral_norm_leaves_every_weight_with_a_largest_singular_value_of_one(
    widths, scale, iterations, seed
) -> None:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, widths[0], 3), nn.Flatten()]
    width = widths[0] * 16  # a 4x4 map after a 3x3 conv on 6x6
    for out in widths[1:]:
        layers += [nn.LeakyReLU(0.2), nn.Linear(width, out)]
        width = out
    critic = nn.Sequential(*layers)
    generator = nn.Sequential(nn.ConvTranspose2d(2, widths[-1], 3))
    with torch.no_grad():
        for p in [*critic.parameters(), *generator.parameters()]:
            p.mul_(scale)
    regularizer = build("regularizer", "spectral-norm", generator=True, power_iterations=iterations)
    critic, generator = regularizer.wrap_discriminator(critic), regularizer.wrap_generator(generator)
    for _ in range(30):  # power iterations run in training-mode forward passes
        critic(torch.randn(3, 1, 6, 6))
        generator(torch.randn(3, 2, 2, 2))
    critic.eval(), generator.eval()
    normalised = [m for m in [*critic.modules(), *generator.modules()] if hasattr(m, "parametrizations")]
    assert len(normalised) == len(widths) + 1
    for module in normalised:
        assert largest_singular_value(module) == pytest.approx(1.0, abs=0.05)


class BatchNormGenerator(nn.Module):
    z_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def train_with_ema(ema: Any, generator: nn.Module, steps: int, seed: int, first_step: int = 0) -> None:
    """Random G updates (optimizer steps on a dummy loss), each followed by the EMA's update."""
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.1)
    for step in range(first_step, first_step + steps):
        optimizer.zero_grad()
        generator(torch.randn(8, 3)).square().mean().backward()
        optimizer.step()
        ema.after_g_step(generator, step + 1)


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@FAST
@given(steps=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_ema_with_decay_zero_is_the_generator(steps, seed) -> None:
    ema, generator = build("regularizer", "ema", decay=0.0), BatchNormGenerator()
    generator = ema.wrap_generator(generator)
    train_with_ema(ema, generator, steps, seed)
    average = ema.sampling_generator()
    assert average is not None and average is not generator
    expected, got = snapshot(generator), snapshot(average)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    assert not any(p.requires_grad for p in average.parameters())


@FAST
@given(decay=st.floats(0.0, 0.99), start=st.integers(0, 4), steps=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_ema_follows_g_until_start_then_averages_with_its_decay(decay, start, steps, seed) -> None:
    ema = build("regularizer", "ema", decay=decay, start=start)
    generator = ema.wrap_generator(BatchNormGenerator())
    expected: dict[str, Tensor] | None = None
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.1)
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        generator(torch.randn(8, 3)).square().mean().backward()
        optimizer.step()
        ema.after_g_step(generator, step)
        now = snapshot(generator)
        if expected is None or step <= start:
            expected = now
        else:
            expected = {
                k: decay * expected[k] + (1 - decay) * now[k] if now[k].is_floating_point() else now[k] for k in now
            }
    got = snapshot(ema.sampling_generator())
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_ema_state_round_trips_through_a_weights_only_checkpoint_and_resumes_exactly() -> None:
    reference = build("regularizer", "ema", decay=0.7)
    generator = reference.wrap_generator(BatchNormGenerator())
    train_with_ema(reference, generator, 3, seed=1)
    buffer = io.BytesIO()
    torch.save({"ema": reference.state_dict(), "g": generator.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    train_with_ema(reference, generator, 3, seed=2, first_step=3)

    resumed = build("regularizer", "ema", decay=0.7)
    fresh = resumed.wrap_generator(BatchNormGenerator())
    fresh.load_state_dict(saved["g"])
    resumed.load_state_dict(saved["ema"])
    train_with_ema(resumed, fresh, 3, seed=2, first_step=3)
    want, got = snapshot(reference.sampling_generator()), snapshot(resumed.sampling_generator())
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)


# -- targets and inputs ----------------------------------------------------------------


@pytest.mark.properties
@FAST
@given(real=st.floats(0.51, 1.0), incoming_real=st.floats(0.51, 1.0), incoming_fake=st.floats(0.0, 0.49))
def test_one_sided_label_smoothing_never_changes_fake_targets(real, incoming_real, incoming_fake) -> None:
    smoothing = build("regularizer", "label-smoothing", real=real)
    targets = smoothing.adjust_targets(Targets(real=incoming_real, fake=incoming_fake))
    assert targets.fake == incoming_fake
    assert targets.real == real
    two_sided = build("regularizer", "label-smoothing", real=real, fake=0.1)
    assert two_sided.adjust_targets(Targets()).fake == 0.1


@FAST
@given(
    sigma=st.floats(0.01, 2.0),
    end_fraction=st.floats(0.0, 1.0),
    anneal=st.sampled_from(["linear", "cosine", "none"]),
    progress=st.floats(0.0, 1.0),
)
def test_instance_noise_sigma_follows_its_schedule(sigma, end_fraction, anneal, progress) -> None:
    end = sigma * end_fraction
    noise = build("regularizer", "instance-noise", sigma=sigma, end_sigma=end, anneal=anneal)
    expected = {
        "none": sigma,
        "linear": sigma + (end - sigma) * progress,
        "cosine": end + (sigma - end) * (1 + math.cos(math.pi * progress)) / 2,
    }[anneal]
    assert noise.sigma(progress) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert noise.sigma(0.0) == pytest.approx(sigma)
    assert noise.sigma(1.0) == pytest.approx(sigma if anneal == "none" else end, abs=1e-12)
    if anneal != "none":
        assert noise.sigma(min(progress + 0.1, 1.0)) <= noise.sigma(progress) + 1e-12
    torch.manual_seed(0)
    drawn = noise.transform_d_input(torch.zeros(40_000), progress)
    assert float(drawn.std()) == pytest.approx(noise.sigma(progress), rel=0.05, abs=1e-9)


@pytest.mark.parametrize("anneal", ["linear", "cosine"])
def test_instance_noise_annealed_to_zero_leaves_the_inputs_alone_at_the_end(anneal) -> None:
    noise = build("regularizer", "instance-noise", sigma=0.5, anneal=anneal)
    x = torch.randn(16, 2)
    assert torch.equal(noise.transform_d_input(x, 1.0), x)
    assert not torch.equal(noise.transform_d_input(x, 0.5), x)


# -- packing: shapes and phase isolation -----------------------------------------------

RUN_DIR = Path(tempfile.gettempdir()) / "ganforge-properties-never-written"


def packed_run(m: int, packs: int, dataset: str, seed: int) -> Run:
    networks = (
        {"generator": "mlp:hidden=8,depth=1", "discriminator": "mlp:hidden=8,depth=1", "dataset": "ring-8:n=256"}
        if dataset == "ring-8"
        else {"generator": "dcgan:width=4,z_dim=4", "discriminator": "dcgan:width=4", "dataset": "mnist-5k:size=16"}
    )
    config = RunConfig.model_validate(
        {
            **networks,
            "regularizers": [f"packing:m={m}"],
            "batch_size": m * packs,
            "seed": seed,
            "steps": 4,
            "device": "cpu",
        }
    )
    return Run(resolve(config, REGISTRY), get_plugins(), RUN_DIR)


def parameters(module: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def unchanged(before: dict[str, Tensor], module: nn.Module) -> bool:
    return all(torch.equal(before[n], p) for n, p in module.named_parameters())


@pytest.mark.properties
@SLOW
@given(
    m=st.integers(2, 4),
    packs=st.integers(1, 3),
    dataset=st.sampled_from(["ring-8", "mnist-5k"]),
    seed=st.integers(0, 2**16),
)
def test_packing_keeps_the_phases_isolated_and_d_sees_n_over_m_inputs(m, packs, dataset, seed) -> None:
    run = packed_run(m, packs, dataset, seed)
    engine, data_shape = run.engine, run.dataset.shape
    assert run.ctx.d_input_shape == (data_shape[0] * m, *data_shape[1:])
    real = engine.batches.next()
    logits: list[Tensor] = []
    handle = run.discriminator.register_forward_hook(lambda module, args, out: logits.append(out))

    g_before, opt_g = parameters(run.generator), copy.deepcopy(engine.opt_g.state_dict())
    d_before = parameters(run.discriminator)
    engine.d_phase(real, step=0)
    # n/m packs of the real batch and n/m of the fake one: in one call when D is per-sample (mlp is)
    calls = [(2 * packs,)] if engine.per_sample_critic else [(packs,), (packs,)]
    assert [tuple(t.shape) for t in logits] == calls
    assert unchanged(g_before, run.generator) and all(p.grad is None for p in run.generator.parameters())
    assert engine.opt_g.state_dict() == opt_g
    assert not unchanged(d_before, run.discriminator)

    d_before, d_grads = parameters(run.discriminator), [p.grad.clone() for p in run.discriminator.parameters()]
    engine.g_phase(real, step=0)
    handle.remove()
    assert unchanged(d_before, run.discriminator)
    assert all(torch.equal(g, p.grad) for g, p in zip(d_grads, run.discriminator.parameters(), strict=True))
    assert not unchanged(g_before, run.generator)


@FAST
@given(m=st.integers(2, 5), packs=st.integers(1, 4), shape=st.sampled_from([(2,), (3, 4, 4), (1, 2, 3)]))
def test_packing_concatenates_consecutive_samples_along_the_first_feature_axis(m, packs, shape) -> None:
    packing = build("regularizer", "packing", batch_size=m * packs, m=m)
    x = torch.arange(m * packs * math.prod(shape), dtype=torch.float32).reshape(m * packs, *shape)
    packed = packing.transform_d_input(x, 0.0)
    assert tuple(packed.shape) == (packs, *packing.d_input_shape(shape))
    for i in range(packs):
        torch.testing.assert_close(packed[i], torch.cat(list(x[i * m : (i + 1) * m]), dim=0))
    with pytest.raises(ValueError, match="packs of m"):
        packing.transform_d_input(x[:-1], 0.0)


# -- diffaugment -----------------------------------------------------------------------


def numbered_images(n: int, side: int) -> Tensor:
    """Every pixel holds a distinct positive number: 1 + its index in the image."""
    return (torch.arange(side * side, dtype=torch.float64) + 1).reshape(1, 1, side, side).repeat(n, 1, 1, 1)


@FAST
@given(n=st.integers(1, 6), side=st.integers(4, 20), ratio=st.floats(0.05, 0.5), seed=st.integers(0, 2**16))
def test_diffaugment_translation_shifts_each_image_whole_by_at_most_its_reach(n, side, ratio, seed) -> None:
    augment = build("regularizer", "diffaugment", (1, side, side), color=0, cutout=0, translation=ratio)
    torch.manual_seed(seed)
    out = augment.transform_d_input(numbered_images(n, side), 0.0)
    reach = int(side * ratio + 0.5)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    for image in out[:, 0]:
        kept = image > 0
        assert kept.any()
        source = image[kept].long() - 1
        dy, dx = source // side - rows[kept], source % side - cols[kept]
        assert (dy == dy[0]).all() and (dx == dx[0]).all(), "one shift per image"
        assert abs(int(dy[0])) <= reach and abs(int(dx[0])) <= reach
        assert int(kept.sum()) == (side - abs(int(dy[0]))) * (side - abs(int(dx[0]))), "only uncovered pixels are 0"


@FAST
@given(n=st.integers(1, 6), side=st.integers(4, 20), ratio=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_diffaugment_cutout_erases_at_most_one_square_and_keeps_the_rest(n, side, ratio, seed) -> None:
    augment = build("regularizer", "diffaugment", (1, side, side), color=0, translation=0, cutout=ratio)
    images = numbered_images(n, side)
    torch.manual_seed(seed)
    out = augment.transform_d_input(images, 0.0)
    kept = out != 0
    assert torch.equal(out[kept], images[kept])
    size = int(side * ratio + 0.5)
    for erased in (~kept)[:, 0]:
        assert int(erased.sum()) <= size * size
        assert (int(erased.sum()) > 0) == (size > 0), "a square of side 0 or more, centred inside the image"
        rows, cols = erased.any(dim=1).nonzero(), erased.any(dim=0).nonzero()
        assert int(erased.sum()) == len(rows) * len(cols), "the erased pixels form one rectangle"


@FAST
@given(
    color=st.floats(0.0, 1.0), translation=st.floats(0.0, 0.5), cutout=st.floats(0.0, 1.0), seed=st.integers(0, 2**16)
)
def test_diffaugment_is_differentiable_and_keeps_the_shape(color, translation, cutout, seed) -> None:
    if not (color or translation or cutout):
        color = 1.0
    augment = build("regularizer", "diffaugment", (3, 8, 8), color=color, translation=translation, cutout=cutout)
    torch.manual_seed(seed)
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    out = augment.transform_d_input(x, 0.0)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_diffaugment_refuses_vectors_at_its_boundary() -> None:
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        build("regularizer", "diffaugment", (2,)).transform_d_input(torch.randn(4, 2), 0.0)


# -- schedules -------------------------------------------------------------------------


def schedule_options() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    warmup = st.integers(0, 50)
    return st.one_of(
        st.builds(lambda w, e: ("linear-decay", {"warmup": w, "end": e}), warmup, st.floats(0.0, 1.0)),
        st.builds(lambda w, e: ("cosine", {"warmup": w, "end": e}), warmup, st.floats(0.0, 1.0)),
        st.builds(
            lambda w, k, g: ("step", {"warmup": w, "every": k, "gamma": g}),
            warmup,
            st.integers(1, 60),
            st.floats(0.01, 1.0),
        ),
    )


@FAST
@given(chosen=schedule_options(), total=st.integers(1, 300))
def test_schedule_multipliers_stay_in_zero_one_and_warm_up_from_near_zero(chosen, total) -> None:
    name, options = chosen
    schedule = build("scheduler", name, d_steps=1, **options)
    factors = [schedule.lr_multiplier(step, total) for step in range(total + 1)]
    assert all(0.0 <= f <= 1.0 + 1e-9 for f in factors), factors
    warmup = options["warmup"]
    last = total - 1  # steps are 0-based: the run's last step is total - 1
    if warmup:
        assert factors[0] <= 1 / (warmup + 1) + 1e-12
        # The warm-up steps, then the first decay step at the full rate (unless it is also the last).
        ramp = factors[: min(warmup + 1 if warmup < last else warmup, total)]
        assert all(a < b for a, b in itertools.pairwise(ramp)), "warm-up must rise"
    if warmup < last:
        assert factors[warmup] == pytest.approx(1.0), "decay starts from the full rate"
    if name != "step" and warmup <= last:
        assert factors[last] == pytest.approx(options["end"]), "decay reaches `end` at the last step"
        decaying = factors[warmup:]
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(decaying))


@FAST
@given(warmup=st.integers(0, 10), every=st.integers(1, 20), gamma=st.floats(0.01, 1.0), drops=st.integers(0, 5))
def test_step_schedule_multiplies_by_gamma_every_k_steps(warmup, every, gamma, drops) -> None:
    schedule = build("scheduler", "step", d_steps=1, warmup=warmup, every=every, gamma=gamma)
    step = warmup + drops * every
    assert schedule.lr_multiplier(step, 10_000) == pytest.approx(gamma**drops)
    assert schedule.lr_multiplier(step + every - 1, 10_000) == pytest.approx(gamma**drops)


def test_every_schedule_keeps_d_steps() -> None:
    for name in ("constant", "linear-decay", "cosine", "step"):
        assert build("scheduler", name, d_steps=3).d_steps == 3


# -- graph-safe exactly where the work ignores the step ----------------------------------

MY_PLUGINS = {"losses", "regularizers"}
# Options under which a component's trait set changes, besides its defaults.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "r1": [{"every": 2}],
    "r2": [{"every": 2}],
    "ema": [{"start": 3}],
    "instance-noise": [{"anneal": "none"}, {"anneal": "cosine"}],
}
IMAGE = (1, 6, 6)


def graph_cases() -> list[Any]:
    cases = []
    for kind in ("loss", "regularizer"):
        for component in REGISTRY.all(kind):
            if component.plugin in MY_PLUGINS:
                for options in [{}, *VARIANTS.get(component.name, [])]:
                    label = ",".join(f"{k}={v}" for k, v in options.items())
                    cases.append(pytest.param(kind, component.name, options, id=f"{component.name}:{label}"))
    return cases


def critic_for(shape: tuple[int, ...]) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 6), nn.Tanh(), nn.Linear(6, 1), nn.Flatten(0))


def what_it_does(kind: str, name: str, options: dict[str, Any], step: int, progress: float) -> list[Tensor]:
    """Everything the component computes or changes in one D phase and one G phase, from fixed seeds."""
    torch.manual_seed(0)
    built = build(kind, name, IMAGE, batch_size=8, **options)
    real, fake = torch.randn(8, *IMAGE), torch.randn(8, *IMAGE)
    if kind == "loss":
        critic = critic_for(IMAGE)
        ctx = DContext(critic, real, fake, Targets(), step, progress)
        d_loss = built.d_loss(critic(real), critic(fake), ctx)
        built.after_d_step(critic)
        g_loss = built.g_loss(critic(fake), GContext(lambda: critic(real), Targets(), step, progress))
        return [d_loss.detach(), g_loss.detach(), *[p.detach() for p in critic.parameters()]]
    critic = built.wrap_discriminator(critic_for(built.d_input_shape(IMAGE)))
    generator = built.wrap_generator(nn.Linear(3, 3))
    seen_real, seen_fake = built.transform_d_input(real, progress), built.transform_d_input(fake, progress)
    targets = built.adjust_targets(Targets())
    penalty = built.d_penalty(DContext(critic, seen_real, seen_fake, targets, step, progress))
    built.after_d_step(critic)
    for offset in (1, 2):  # two G steps with G moved in between, so an average has something to weigh
        built.after_g_step(generator, step + offset)
        with torch.no_grad():
            generator.weight.add_(1.0)
    sampler = built.sampling_generator()
    return [
        seen_real,
        seen_fake,
        torch.tensor([targets.real, targets.fake]),
        torch.zeros(()) if penalty is None else penalty.detach(),
        critic(seen_real).detach(),
        *([] if sampler is None else [p.detach() for p in sampler.parameters()]),
    ]


@pytest.mark.parametrize(("kind", "name", "options"), graph_cases())
def test_graph_safe_is_declared_exactly_where_the_work_ignores_step_and_progress(kind, name, options) -> None:
    component = REGISTRY.get(kind, name)
    declared = "graph-safe" in component.traits(component.validate(options, ResolveContext(batch_size=8)))
    early = what_it_does(kind, name, options, step=0, progress=0.0)
    late = what_it_does(kind, name, options, step=5, progress=0.7)
    same = len(early) == len(late) and all(torch.equal(a, b) for a, b in zip(early, late, strict=False))
    assert same == declared, f"graph-safe declared: {declared}, but the work {'ignores' if same else 'reads'} the step"


# -- annealed strengths -----------------------------------------------------------------


@FAST
@given(shape=st.sampled_from(["linear", "cosine"]), end=st.floats(0.0, 2.0), progress=st.floats(0.0, 1.0))
def test_an_annealed_strength_runs_from_one_to_anneal_to_monotonically(shape, end, progress) -> None:
    options = R1Options(anneal=shape, anneal_to=end)
    assert options.strength(0.0) == pytest.approx(1.0)
    assert options.strength(1.0) == pytest.approx(end)
    low, high = sorted((1.0, end))
    assert low - 1e-12 <= options.strength(progress) <= high + 1e-12
    assert R1Options().strength(progress) == 1.0  # anneal=none: constant


@FAST
@given(direction=DIRECTION, norm=st.floats(0.1, 3.0), progress=st.floats(0.0, 1.0))
def test_annealed_penalties_scale_with_the_strength_at_their_progress(direction, norm, progress) -> None:
    ctx = unit_critic_context(direction, norm, 3, 0)
    at = DContext(ctx.discriminator, ctx.real, ctx.fake, ctx.targets, step=0, progress=progress)
    for name, field in (("r1", "gamma"), ("r2", "gamma"), ("gradient-penalty", "weight")):
        constant = build("regularizer", name, **{field: 4.0})
        annealed = build("regularizer", name, **{field: 4.0, "anneal": "linear", "anneal_to": 0.0})
        expected = float(constant.d_penalty(at).detach()) * (1.0 - progress)
        assert float(annealed.d_penalty(at).detach()) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_diffaugment_annealed_to_zero_leaves_images_untouched_at_the_end() -> None:
    augment = build("regularizer", "diffaugment", anneal="linear", anneal_to=0.0)
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    assert torch.equal(augment.transform_d_input(images, progress=1.0), images)
    assert not torch.equal(augment.transform_d_input(images, progress=0.0), images)


@pytest.mark.parametrize("name", ["r1", "r2", "gradient-penalty", "diffaugment"])
def test_annealing_a_strength_gives_up_graph_safety(name: str) -> None:
    component = get_registry().get("regularizer", name)
    assert "graph-safe" in component.traits(component.validate({}))
    assert "graph-safe" not in component.traits(component.validate({"anneal": "cosine"}))


# -- targets are D's alone; the run's end is reached at its last step -------------------


def targets_losses() -> list[str]:
    return sorted(c.name for c in REGISTRY.all("loss") if "targets" in c.traits(c.validate({})))


@pytest.mark.parametrize("name", targets_losses())
@FAST
@given(
    fake=st.lists(st.floats(-6, 6, width=32), min_size=1, max_size=6),
    real_target=st.floats(0.51, 1.0),
    fake_target=st.floats(0.0, 0.49),
)
def test_label_smoothing_changes_d_targets_only_never_g_objective(name, fake, real_target, fake_target) -> None:
    loss = build("loss", name)
    logits = torch.tensor(fake, requires_grad=True)
    real_logits = torch.linspace(-1, 1, len(fake))

    def g_loss(targets: Targets) -> tuple[float, Tensor]:
        ctx = GContext(real_logits=lambda: real_logits, targets=targets, step=0, progress=0.0)
        value = loss.g_loss(logits, ctx)
        (grad,) = torch.autograd.grad(value, logits)
        return float(value.detach()), grad

    plain, plain_grad = g_loss(Targets())
    smoothed, smoothed_grad = g_loss(Targets(real=real_target, fake=fake_target))
    assert smoothed == plain
    assert torch.equal(smoothed_grad, plain_grad)


def test_there_are_targets_losses_to_check() -> None:
    assert {"bce", "non-saturating", "lsgan", "relativistic"} <= set(targets_losses())


@pytest.mark.parametrize("total", [1, 2, 3, 10, 101])
def test_run_progress_is_zero_at_the_first_step_and_one_at_the_last(total: int) -> None:
    from ganforge_core import run_progress

    values = [run_progress(step, total) for step in range(total)]
    assert values[-1] == 1.0
    assert values[0] == (1.0 if total == 1 else 0.0)
    assert all(a < b for a, b in itertools.pairwise(values))


def test_a_run_reaches_its_annealing_and_schedule_end_values_at_its_last_step() -> None:
    steps = 5
    config = RunConfig.model_validate(
        {
            "generator": "mlp:hidden=8,depth=1",
            "dataset": "ring-8:n=256",
            "regularizers": ["instance-noise:sigma=0.5,anneal=linear"],
            "scheduler": "linear-decay:end=0.25",
            "batch_size": 16,
            "steps": steps,
            "device": "cpu",
        }
    )
    run = Run(resolve(config, REGISTRY), get_plugins(), RUN_DIR)
    (noise,) = run.engine.regularizers.values()
    seen: list[float] = []
    transform = noise.transform_d_input
    noise.transform_d_input = lambda x, progress: seen.append(progress) or transform(x, progress)
    base = run.engine.opt_g.param_groups[0]["lr"]
    rates = []
    for step in range(steps):
        run.engine.step(step)
        rates.append(run.engine.opt_g.param_groups[0]["lr"] / base)
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert rates[0] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.25)


@pytest.mark.parametrize(("name", "shape"), [("cosine", lambda p: (1 - math.cos(math.pi * p)) / 2), ("linear-decay", lambda p: p)])
def test_a_beta2_ramp_sets_both_adams_beta2_each_step_lazy_networks_to_the_power_c(name, shape) -> None:
    steps = 6
    config = RunConfig.model_validate(
        {
            "generator": "mlp:hidden=8,depth=1",
            "dataset": "ring-8:n=256",
            "regularizers": ["r1:gamma=1,every=4"],  # D's Adam: lr * c and betas ** c, c = 4/5
            "scheduler": f"{name}:end=0.5,beta2_from=0.9",
            "betas": [0.0, 0.99],
            "batch_size": 16,
            "steps": steps,
            "device": "cpu",
        }
    )
    plan = resolve(config, REGISTRY)
    assert "beta2-schedule" in plan.scheduler.traits
    run = Run(plan, get_plugins(), RUN_DIR)
    seen = []
    for step in range(steps):
        run.engine.step(step)
        seen.append((run.engine.opt_g.param_groups[0]["betas"][1], run.engine.opt_d.param_groups[0]["betas"][1]))
    want = [0.9 + 0.09 * shape(step / (steps - 1)) for step in range(steps)]
    assert [g for g, _ in seen] == pytest.approx(want)
    assert [d for _, d in seen] == pytest.approx([b ** (4 / 5) for b in want])
    assert seen[0][0] == pytest.approx(0.9) and seen[-1][0] == pytest.approx(0.99)
    run.engine.schedule.adam_beta2 = lambda *args: 1.0
    with pytest.raises(ContractError, match=rf"scheduler '{name}': adam_beta2\(\) returned 1.0; Adam's beta2 is"):
        run.engine.step(0)


def test_without_beta2_from_beta2_stays_the_runs_and_the_engine_never_asks() -> None:
    config = RunConfig.model_validate(
        {"generator": "mlp:hidden=8,depth=1", "dataset": "ring-8:n=256", "scheduler": "cosine:end=0.5",
         "betas": [0.5, 0.95], "batch_size": 16, "steps": 3, "device": "cpu"}
    )
    plan = resolve(config, REGISTRY)
    assert "beta2-schedule" not in plan.scheduler.traits
    run = Run(plan, get_plugins(), RUN_DIR)
    assert run.engine.scheduled_beta2 is None
    run.engine.schedule.adam_beta2 = lambda *args: pytest.fail("asked a schedule without the trait")
    for step in range(3):
        run.engine.step(step)
    assert run.engine.opt_g.param_groups[0]["betas"] == (0.5, 0.95)


def test_a_beta2_ramp_trains_eagerly_on_cuda_since_a_graph_would_freeze_beta2() -> None:
    from ganforge_core.fastpath import choose_fast_path

    def fast(scheduler: str) -> Any:
        config = RunConfig.model_validate({"generator": "mlp", "dataset": "ring-8", "scheduler": scheduler})
        return choose_fast_path(resolve(config, REGISTRY), torch.device("cuda"), 2)

    assert fast("cosine").cuda_graph
    ramped = fast("cosine:beta2_from=0.9")
    assert not ramped.cuda_graph and "scheduler 'cosine'" in ramped.graph_blocker


def test_check_schedule_refuses_a_beta2_change_the_schedule_does_not_declare() -> None:
    from ganforge_core import Schedule
    from ganforge_core.testing import check_schedule

    class Sneaky(Schedule):
        def adam_beta2(self, step: int, total_steps: int, final: float) -> float:
            return 0.9

    check_schedule(Sneaky(1), traits={"beta2-schedule"})
    with pytest.raises(AssertionError, match=r"adam_beta2\(0, 10, 0.99\) = 0.9, not the run's 0.99: .*'beta2-schedule'"):
        check_schedule(Sneaky(1))

    class OutOfRange(Schedule):
        def adam_beta2(self, step: int, total_steps: int, final: float) -> float:
            return 1.0

    with pytest.raises(AssertionError, match=r"Adam's beta2 is a number in \[0, 1\)"):
        check_schedule(OutOfRange(1), traits={"beta2-schedule"})


def spectral_generator() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 7), nn.ReLU(), nn.Linear(7, 5))


@FAST
@given(decay=st.floats(0.5, 0.99), steps=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_ema_of_a_spectrally_normalised_g_keeps_unit_power_iteration_vectors(decay, steps, seed) -> None:
    norm = build("regularizer", "spectral-norm", generator=True)
    ema = build("regularizer", "ema", decay=decay)
    generator = ema.wrap_generator(norm.wrap_generator(spectral_generator()))
    torch.manual_seed(seed)
    for step in range(1, steps + 1):
        with torch.no_grad():  # G's weights jump: its own singular vectors turn far each step
            for p in generator.parameters():
                p.copy_(torch.randn_like(p))
        generator(torch.randn(4, 3))  # a training forward: G's power iteration runs
        ema.after_g_step(generator, step)
    average = ema.sampling_generator()
    vectors = {k: v for k, v in average.state_dict().items() if k.endswith(("._u", "._v"))}
    assert len(vectors) == 4
    for key, vector in vectors.items():
        assert float(vector.norm()) == pytest.approx(1.0, abs=1e-5), key


def test_ema_spectral_vectors_estimate_the_averaged_weights_norm() -> None:
    norm = build("regularizer", "spectral-norm", generator=True)
    ema = build("regularizer", "ema", decay=0.9)
    generator = ema.wrap_generator(norm.wrap_generator(spectral_generator()))
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.05)
    for step in range(1, 60):
        optimizer.zero_grad()
        generator(torch.randn(8, 3)).square().mean().backward()
        optimizer.step()
        ema.after_g_step(generator, step)
    average = ema.sampling_generator()
    for layer in (average[0], average[2]):
        chain = layer.parametrizations.weight
        u, v = chain[0]._u, chain[0]._v
        estimate = float(u @ chain.original @ v)
        assert estimate == pytest.approx(float(torch.linalg.matrix_norm(chain.original, ord=2)), rel=1e-3)


@pytest.mark.parametrize(
    "listed", [["packing:m=2", "diffaugment"], ["diffaugment", "packing:m=2"], ["packing:m=2", "instance-noise"]]
)
def test_packing_is_applied_after_every_other_d_input_transform(listed: list[str]) -> None:
    config = RunConfig.model_validate(
        {"generator": "dcgan:width=4,z_dim=4", "dataset": "mnist-5k:size=16", "regularizers": listed, "batch_size": 8}
    )
    plan = resolve(config, REGISTRY)
    names = [c.name for c in plan.config.regularizers]
    assert names[-1] == "packing" and sorted(names) == sorted(c.split(":")[0] for c in listed)
