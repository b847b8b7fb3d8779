"""Progressive growing (plugins/ganforge_progan): the schedule, the fade-in, ProGAN's layers, and growing in a run.

The fade-in is checked exactly: at alpha 0 a stage's G (D) equals the lower stage,
upsampled (downsampled), at alpha 1 the new stage. The stage and alpha a run
takes are the schedule's at every step, and the same after a resume.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from ganforge_core import ConfigError, RunConfig, hookimpl, load_trained, resolve
from ganforge_core import checkpoint as ckpt
from ganforge_core.cli import app
from ganforge_core.run import Run
from ganforge_core.session import Interrupted, train
from ganforge_core.testing import check_component
from ganforge_progan.layers import EqualizedConv2d, EqualizedLinear, MinibatchStd, PixelNorm, group_of
from ganforge_progan.networks import ProGANDiscriminator, ProGANGenerator
from ganforge_progan.options import DiscriminatorOptions, GeneratorOptions, Growth, working_side
from test_reliability import SignalAt, assert_identical
from test_reliability_resume import plugins_with

SHAPES = [(1, 16, 16), (1, 28, 28), (3, 8, 12)]


def shape_id(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def generator(shape: tuple[int, ...], **options: Any) -> ProGANGenerator:
    torch.manual_seed(0)
    return ProGANGenerator(GeneratorOptions(width=8, z_dim=6, **options), shape)


def discriminator(shape: tuple[int, ...], **options: Any) -> ProGANDiscriminator:
    torch.manual_seed(1)
    return ProGANDiscriminator(DiscriminatorOptions(width=8, **options), shape)


# -- the schedule ----------------------------------------------------------------------


def test_the_stage_and_alpha_at_given_steps_are_the_schedules() -> None:
    # 4 stages (4, 8, 16, 32 px), equal shares of a 101-step run (progress = step / 100):
    # stage s starts at step 25 s and fades in over its first half share (12.5 steps).
    growth = Growth.of(GeneratorOptions(), 4)
    expected = {0: (0, 1.0), 24: (0, 1.0), 25: (1, 0.0), 30: (1, 0.4), 36: (1, 0.88), 38: (1, 1.0),
                49: (1, 1.0), 50: (2, 0.0), 56: (2, 0.48), 75: (3, 0.0), 80: (3, 0.4), 100: (3, 1.0)}
    assert {step: growth.at(step, 101) for step in expected} == expected  # exact: fractions, then one float
    # A fifth of the run per stage, a quarter of it fading: stages start at steps 20, 40, 60.
    fifths = Growth.of(GeneratorOptions(stage_fraction=0.2, fade=0.25), 4)
    assert fifths.share == Fraction(1, 5) and fifths.fade == Fraction(1, 4), "the decimals as written"
    assert [fifths.at(step, 101) for step in (19, 20, 22, 25, 40, 59, 60, 100)] == [
        (0, 1.0), (1, 0.0), (1, 0.4), (1, 1.0), (2, 0.0), (2, 1.0), (3, 0.0), (3, 1.0)
    ]
    no_fade = Growth.of(GeneratorOptions(fade=0.0), 4)
    assert no_fade.at(25, 101) == (1, 1.0) and no_fade.at(24, 101) == (0, 1.0)
    assert growth.at(0, 1) == (3, 1.0), "a one-step run is at its end, whole"
    assert Growth.of(GeneratorOptions(), 1).at(0, 100) == (0, 1.0), "4x4 data never grows"


def test_a_stage_fraction_longer_than_the_run_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"stage_fraction=0.5 for each of the 3 stages after 4x4 .* at most 0.3333"):
        Growth.of(GeneratorOptions(stage_fraction=0.5), 4)


def test_the_working_side_is_the_next_power_of_two() -> None:
    assert [working_side((1, s, s)) for s in (4, 5, 16, 28, 32, 33)] == [4, 8, 16, 32, 32, 64]
    assert working_side((3, 8, 12)) == 16
    with pytest.raises(ConfigError, match="at most 1024x1024"):
        working_side((3, 1025, 8))
    with pytest.raises(ConfigError, match=r"progan needs images \[C, H, W\]; the dataset's samples are \[2\]"):
        working_side((2,))


def test_grow_sets_the_schedules_stage_and_alpha_and_returns_the_form() -> None:
    g = generator((1, 32, 32))
    assert (g.stage, g.fading, float(g.alpha)) == (3, False, 1.0), "built whole"
    assert g.grow(30, 101) == (1, True)
    assert (g.stage, float(g.alpha)) == (1, pytest.approx(0.4))
    assert g.grow(40, 101) == (1, False) and float(g.alpha) == 1.0
    assert g.grow(0, 101) == (0, False)


# -- the fade-in -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_g_at_alpha_0_is_the_upsampled_lower_stage_and_at_alpha_1_the_new_one(shape: tuple[int, ...]) -> None:
    g = generator(shape)
    z = torch.randn(5, g.z_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for stage in range(1, g.growth.stages):
            g.set_stage(stage - 1)
            lower = g(z)
            g.set_stage(stage)
            new = g(z)
            g.set_stage(stage, 0.0)
            assert g.fading and torch.equal(g(z), lower), f"stage {stage} at alpha 0"
            g.alpha.fill_(1.0)  # as a captured graph sees it: alpha written in place during the fade
            assert torch.equal(g(z), new), f"stage {stage} at alpha 1"
            g.alpha.fill_(0.25)
            torch.testing.assert_close(g(z), 0.75 * lower + 0.25 * new)
            assert lower.shape == new.shape == (5, *shape) and not torch.allclose(lower, new)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_d_at_alpha_0_judges_the_downsampled_lower_stage_and_at_alpha_1_the_new_one(shape: tuple[int, ...]) -> None:
    d = discriminator(shape)
    x = torch.rand(6, *shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        for stage in range(1, d.growth.stages):
            d.set_stage(stage - 1)
            lower = d(x)
            d.set_stage(stage)
            new = d(x)
            d.set_stage(stage, 0.0)
            assert d.fading and torch.equal(d(x), lower), f"stage {stage} at alpha 0"
            d.alpha.fill_(1.0)
            assert torch.equal(d(x), new), f"stage {stage} at alpha 1"
            assert lower.shape == new.shape == (6,) and not torch.allclose(lower, new)


def test_a_lower_stage_is_upsampled_in_g_and_downsampled_in_d() -> None:
    """G returns, and D takes, the data's full size at every stage."""
    g, d = generator((1, 16, 16)), discriminator((1, 16, 16))
    g.set_stage(0)
    d.set_stage(1)
    with torch.no_grad():
        image = g(torch.randn(3, g.z_dim))
        assert image.shape == (3, 1, 16, 16)
        assert torch.equal(image, F.interpolate(image[:, :, ::4, ::4], scale_factor=4)), "4x4, each pixel 4x4 times"
        x = torch.rand(3, 1, 16, 16) * 2 - 1
        blurred = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2)  # the same 8x8 image at 16x16
        torch.testing.assert_close(d(blurred), d(x))
        d.set_stage(2)
        assert not torch.allclose(d(blurred), d(x)), "the whole stage sees the detail"


def test_28_pixel_images_are_padded_with_black_for_d_and_cropped_from_g() -> None:
    g, d = generator((1, 28, 28)), discriminator((1, 28, 28))
    assert g.side == d.side == 32 and d._margins() == (2, 2, 2, 2)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        whole = F.pad(x, (2, 2, 2, 2), value=-1.0)
        thirty_two = discriminator((1, 32, 32))
        assert torch.equal(d(x), thirty_two(whole)), "D on 28x28 is D on the image padded with -1 to 32x32"
        big = generator((1, 32, 32))
        z = torch.randn(4, g.z_dim)
        assert torch.equal(g(z), big(z)[:, :, 2:30, 2:30]), "G's 28x28 is the centre of its 32x32"


# -- ProGAN's layers ---------------------------------------------------------------------


def test_minibatch_std_appends_each_groups_standard_deviation() -> None:
    # 8 samples in groups of 4: sample i is in group i % 2. Every feature of a sample is one value.
    values = torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 2.0, 4.0])
    x = values.reshape(8, 1, 1, 1).expand(8, 3, 2, 2).contiguous()
    out = MinibatchStd(group_size=4)(x)
    assert out.shape == (8, 4, 2, 2) and torch.equal(out[:, :3], x)
    # group 0 holds 0, 0, 2, 2: deviations +-1, std 1; group 1 holds 0, 0, 0, 4: mean 1, variance 12/4.
    expected = torch.tensor([1.0, math.sqrt(3.0)] * 4)
    torch.testing.assert_close(out[:, 3], expected.reshape(8, 1, 1).expand(8, 2, 2))
    assert group_of(6, 4) == 3 and group_of(7, 4) == 1 and group_of(2, 4) == 2
    alone = MinibatchStd(group_size=1)(x)
    torch.testing.assert_close(alone[:, 3], torch.full((8, 2, 2), 1e-4))  # sqrt(0 + 1e-8)


def test_pixel_norm_gives_every_pixel_unit_rms_over_channels() -> None:
    x = torch.randn(5, 7, 3, 3) * torch.linspace(0.1, 30, 5).reshape(5, 1, 1, 1)
    out = PixelNorm()(x)
    torch.testing.assert_close(out.square().mean(dim=1), torch.ones(5, 3, 3))
    torch.testing.assert_close(out * x.square().mean(dim=1, keepdim=True).sqrt(), x)  # the direction is kept


def test_equalized_layers_scale_their_unit_weights_by_hes_constant_at_run_time() -> None:
    torch.manual_seed(4)
    conv = EqualizedConv2d(8, 4, 3)
    assert conv.scale == pytest.approx(1 / 6)  # sqrt(2 / fan_in), fan_in = 8 * 3 * 3
    assert 0.85 < float(conv.weight.detach().std()) < 1.15 and float(conv.bias.detach().abs().max()) == 0.0
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight / 6, conv.bias, padding=1))
    dense = EqualizedLinear(50, 3, gain=1.0)
    assert dense.scale == pytest.approx(1 / math.sqrt(50))
    v = torch.randn(4, 50)
    torch.testing.assert_close(dense(v), v @ (dense.weight / math.sqrt(50)).T + dense.bias)
    g = generator((1, 16, 16))
    assert g.input.scale == pytest.approx(math.sqrt(2) / 4 / math.sqrt(6)), "ProGAN's first dense layer: gain sqrt(2)/4"
    assert g.to_rgb[0].scale == pytest.approx(1 / math.sqrt(8)), "toRGB: gain 1"


# -- in a run ----------------------------------------------------------------------------

TINY = {
    "generator": "progan:width=4,z_dim=4",
    "discriminator": "progan:width=4",
    "dataset": "mnist-5k:size=16",  # 3 stages: 4, 8 and 16 pixels
    "loss": "wgan-gp",
    "scheduler": "constant:d_steps=1",
    "batch_size": 8,
    "device": "cpu",
    "metrics": [],
    "log_every": 1,
}


def test_the_engine_captures_graphs_again_exactly_when_the_networks_change_form(tmp_path: Path) -> None:
    plugins = plugins_with()
    run = Run(resolve(RunConfig.model_validate({**TINY, "steps": 12}), plugins.registry), plugins, tmp_path)
    engine = run.engine
    assert engine.growing == [run.generator, run.discriminator]
    # Steps 0-3 are stage 0, 4-5 fade stage 1 in (progress 4/11 to 6/11 of 1/3-shares), 6-7 are stage 1.
    forms = {step: (run.generator.growth.at(step, 12)[0], run.generator.fading) for step in range(12)}
    assert engine.grow(0) is False, "the first form is no change"
    captured = object()
    kind = engine.step_kind(0)
    for step, changes in ((1, False), (3, False), (4, True), (5, False), (6, True), (7, False)):
        engine._graphs[kind] = captured  # type: ignore[assignment]  # CUDA is absent: a stand-in graph
        engine._eager_runs[kind] = 3
        assert engine.grow(step) is changes, f"step {step}"
        assert (kind in engine._graphs, kind in engine._eager_runs) == (not changes, not changes), f"step {step}"
        assert (run.generator.stage, run.discriminator.stage) == (forms[step][0],) * 2
    assert run.generator.fading is False and engine.grow(7) is False


def float32(form: tuple[int, float]) -> tuple[int, float]:
    return form[0], float(torch.tensor(form[1], dtype=torch.float32))


class Recorder:
    """Records the stage and alpha of G and D at the end of every step."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int, float, int, float]] = {}

    @hookimpl
    def ganforge_step_end(self, run: Any, step: int, stats: dict[str, float]) -> None:
        g, d = run.generator, run.discriminator
        self.seen[step] = (g.stage, float(g.alpha), d.stage, float(d.alpha))


def test_stage_and_alpha_follow_the_schedule_and_survive_a_resume(tmp_path: Path) -> None:
    steps, stop = 12, 5  # the stop falls in stage 1's fade (steps 4 and 5)

    def config(out: Path) -> RunConfig:
        return RunConfig.model_validate({**TINY, "steps": steps, "out": str(out)})

    reference = Recorder()
    done = train(config(tmp_path / "reference"), plugins=plugins_with(("recorder", reference)), quiet=True)
    growth = Growth.of(GeneratorOptions(), 3)
    # step_end reports the steps done; alpha is held as a float32 tensor
    schedule = {step + 1: float32(growth.at(step, steps)) for step in range(steps)}
    assert {k: (g, a) for k, (g, a, _, _) in reference.seen.items()} == schedule
    assert {k: (g, a) for k, (_, _, g, a) in reference.seen.items()} == schedule
    assert {stage for stage, _ in schedule.values()} == {0, 1, 2} and 0 < schedule[stop + 1][1] < 1

    stopped, before = tmp_path / "stopped", Recorder()
    with pytest.raises(Interrupted):
        train(config(stopped), plugins=plugins_with(("stop", SignalAt(stop)), ("recorder", before)), quiet=True)
    paused = load_trained(ckpt.checkpoint_path(stopped, stop)).sampler()
    assert (paused.stage, float(paused.alpha)) == float32(growth.at(stop, steps)), "a checkpoint samples at its step"

    after = Recorder()
    resumed = train(None, resume=stopped, plugins=plugins_with(("recorder", after)), quiet=True)
    assert sorted(after.seen) == list(range(stop + 1, steps + 1))
    assert {**before.seen, **after.seen} == reference.seen
    want, got = ckpt.load_safe(done.checkpoint), ckpt.load_safe(resumed.checkpoint)
    for key in ("generator", "discriminator", "opt_g", "opt_d"):
        assert_identical(want[key], got[key], key)


@pytest.mark.parametrize("kind", ["generator", "discriminator"])
def test_progan_meets_the_contract(kind: str) -> None:
    check_component(kind, "progan")


def test_progan_trains_from_the_cli_on_28_pixel_mnist(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--gen", "progan:width=4,z_dim=4", "--disc", "progan:width=4", "--loss", "wgan-gp", "--data", "mnist-5k"]
    result = CliRunner().invoke(
        app, ["run", *args, "--steps", "4", "--batch-size", "8", "--metric", "none", "--device", "cpu", "-q",
              "--out", str(out)]
    )
    assert result.exit_code == 0, (result.output, result.stderr)
    assert "done: 4 steps" in result.output and (out / "samples.png").exists()
    trained = load_trained(out)
    assert trained.draw(3, seed=0).shape == (3, 1, 28, 28)
    assert (trained.generator.stage, trained.generator.fading) == (3, False), "the last step: whole"


class CountingGenerator(torch.nn.Module):
    """A broken growing network: its stage counts the calls to grow, not the step."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim, self.calls = 2, 0
        self.net = torch.nn.Linear(2, 2)

    def grow(self, step: int, total_steps: int) -> tuple[int, bool]:
        self.calls += 1
        return min(self.calls - 1, 1), False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Counting:
    @hookimpl
    def ganforge_register_generators(self, register: Any) -> None:
        register("counting", lambda options, ctx: CountingGenerator(), summary="grows by calls",
                 requires={"vector"}, traits={"growing"})


def test_check_component_refuses_a_network_that_grows_by_anything_but_the_step() -> None:
    from ganforge_core.plugins import Plugins

    message = (
        r"generator 'counting' on dataset 'ring-8': growing: grow\(0, 10\) returned \(0, False\), "
        r"then \(1, False\) after other steps"
    )
    with pytest.raises(AssertionError, match=message):
        check_component("generator", "counting", plugins=Plugins(extra=[("counting", Counting())]),
                        datasets=["ring-8"])
