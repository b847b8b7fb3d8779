"""StyleGAN2 (plugins/ganforge_stylegan2): the modulated convolution, truncation, style mixing, path length.

Each maths test compares with the operation written out independently: the
modulated convolution as a loop of F.conv2d with each sample's explicit weight,
the path-length penalty from the Jacobian that torch.autograd.functional builds.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from ganforge_core import ConfigError, GContext, Targets, hookimpl
from ganforge_core.cli import app
from ganforge_core.testing import build_context, check_component
from ganforge_core.trained import load_trained
from ganforge_stylegan2 import build_generator
from ganforge_stylegan2.layers import modulated_conv2d, modulated_weights
from ganforge_stylegan2.networks import StyleGAN2Discriminator, StyleGAN2Generator, minibatch_std
from ganforge_stylegan2.options import DiscriminatorOptions, GeneratorOptions, PathLengthOptions, start_and_doublings
from ganforge_stylegan2.path_length import PathLength

TINY = GeneratorOptions(z_dim=6, w_dim=5, mapping_layers=2, width=4)


def tiny_generator(side: int = 8, **options: object) -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(TINY.model_copy(update=options), 1, side)


# -- the modulated convolution -------------------------------------------------------------


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("kernel", [1, 3])
def test_modulated_conv_equals_a_convolution_with_each_samples_explicit_weight(fused, demodulate, kernel) -> None:
    source = torch.Generator().manual_seed(kernel)
    x = torch.randn(3, 4, 5, 5, generator=source, dtype=torch.float64)
    weight = torch.randn(6, 4, kernel, kernel, generator=source, dtype=torch.float64)
    styles = torch.randn(3, 4, generator=source, dtype=torch.float64) + 1
    expected = []
    for i in range(3):
        w = weight * styles[i].reshape(1, 4, 1, 1)  # w'_oik = s_i * w_oik
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        expected.append(F.conv2d(x[i : i + 1], w, padding=kernel // 2))
    out = modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=kernel // 2, fused=fused)
    torch.testing.assert_close(out, torch.cat(expected), rtol=1e-10, atol=1e-10)


def test_demodulation_gives_every_output_channel_a_unit_norm_weight() -> None:
    source = torch.Generator().manual_seed(1)
    weight = torch.randn(7, 5, 3, 3, generator=source, dtype=torch.float64)
    styles = torch.randn(4, 5, generator=source, dtype=torch.float64) * 3
    norms = modulated_weights(weight, styles).square().sum(dim=(2, 3, 4)).sqrt()  # [N, O]
    torch.testing.assert_close(norms, torch.ones(4, 7, dtype=torch.float64))
    undemodulated = modulated_weights(weight, styles, demodulate=False).square().sum(dim=(2, 3, 4)).sqrt()
    assert (undemodulated - 1).abs().max() > 0.5  # the styles did change the norms demodulation undoes


# -- sizes ---------------------------------------------------------------------------------


def test_sides_are_a_start_of_4_to_7_doubled_at_least_once() -> None:
    assert start_and_doublings(8) == (4, 1)
    assert start_and_doublings(32) == (4, 3)
    assert start_and_doublings(28) == (7, 2)
    assert start_and_doublings(20) == (5, 2)
    assert [s for s in range(1, 40) if start_and_doublings(s) is None] == [
        *range(1, 8), 9, 11, 13, 15, 17, 18, 19, 21, 22, 23, 25, 26, 27, 29, 30, 31, 33, 34, 35, 36, 37, 38, 39
    ]
    generator = StyleGAN2Generator(TINY, 3, 28)
    discriminator = StyleGAN2Discriminator(DiscriminatorOptions(width=4), 3, 28)
    images = generator(torch.randn(2, 6))
    assert images.shape == (2, 3, 28, 28) and discriminator(images).shape == (2,)


@pytest.mark.parametrize("shape", [(1, 36, 36), (1, 16, 8), (16,)])
def test_an_impossible_shape_is_one_config_error_naming_the_sides(shape) -> None:
    with pytest.raises(ConfigError, match=r"stylegan2 needs square images \[C, S, S\] with S = s \* 2\*\*k") as caught:
        build_generator(TINY, build_context(shape))
    assert "\n" not in str(caught.value) and str(list(shape)) in str(caught.value)


# -- mapping, truncation, mixing, noise ------------------------------------------------------


def test_truncation_psi_0_gives_the_w_avg_image_for_every_latent_and_psi_1_changes_nothing() -> None:
    generator = tiny_generator()
    generator.train()
    generator(torch.randn(16, 6))  # a training forward pass moves w_avg off zero
    assert generator.w_avg.abs().sum() > 0
    generator.eval()
    z = torch.randn(4, 6)
    untruncated = generator.synthesis(generator.mapping(z).unsqueeze(1).expand(-1, generator.num_ws, -1))
    with torch.no_grad():
        torch.testing.assert_close(generator(z), untruncated)  # psi = 1 (the default)
        generator.truncation_psi = 0.0
        average = generator(z)
        assert torch.equal(average[0], average[3]) and torch.equal(average[1], average[2])
        w_avg_image = generator.synthesis(generator.w_avg.expand(1, generator.num_ws, -1))
        torch.testing.assert_close(average, w_avg_image.expand(4, -1, -1, -1))
        generator.truncation_psi = 0.5
        halfway_w = generator.w_avg.lerp(generator.mapping(z), 0.5)
        halfway = generator.synthesis(halfway_w.unsqueeze(1).expand(-1, generator.num_ws, -1))
        torch.testing.assert_close(generator(z), halfway)
        generator.train()
        assert not torch.equal(generator(z)[0], generator(z)[3])  # training ignores truncation


def test_w_avg_is_the_running_mean_of_w_in_training_and_eval_leaves_it() -> None:
    generator = tiny_generator(w_avg_beta=0.9)
    z = torch.randn(8, 6)
    generator.train()
    w = generator.mapping(z, track=False)
    generator(z)
    torch.testing.assert_close(generator.w_avg, 0.1 * w.mean(0))  # from zero, lerp toward the batch mean
    before = generator.w_avg.clone()
    generator.eval()
    generator(z)
    assert torch.equal(generator.w_avg, before)


def test_style_mixing_drives_the_later_layers_from_a_second_latent() -> None:
    z = torch.randn(64, 6)
    generator = tiny_generator(32, style_mixing=1.0).train()
    ws = generator.styles(z)
    own = generator.mapping(z, track=False)
    torch.testing.assert_close(ws[:, 0], own)  # the cutoff is at least 1
    assert not torch.allclose(ws[:, -1], own)  # and at most num_ws - 1: the last layer is always mixed
    switched = ~torch.isclose(ws, own.unsqueeze(1)).all(dim=2)  # [N, num_ws]
    assert torch.equal(switched, switched.cummax(dim=1).values)  # from the cutoff on, every layer
    assert len(set(switched.sum(dim=1).tolist())) > 2  # each sample draws its own cutoff
    unmixed = tiny_generator(32, style_mixing=0.0).train().styles(z)
    assert torch.equal(unmixed, unmixed[:, :1].expand_as(unmixed))


def test_noise_is_random_in_training_and_fixed_in_eval_with_a_learned_strength() -> None:
    generator = tiny_generator()
    for parameter in generator.parameters():
        if parameter.dim() == 0:  # the noise strengths start at 0 (stylegan2-ada)
            parameter.data.fill_(1.0)
    z = torch.randn(3, 6)
    with torch.no_grad():
        generator.eval()
        assert torch.equal(generator(z), generator(z))
        generator.train()
        generator.style_mixing = 0.0
        assert not torch.equal(generator(z), generator(z))


def test_minibatch_std_appends_the_group_std_as_a_channel() -> None:
    x = torch.randn(6, 2, 3, 3)
    out = minibatch_std(x, group=4)  # 6 is divided by 3, the largest divisor up to 4
    groups = x.reshape(3, 2, 2, 3, 3)  # group g holds samples j, j + 2, j + 4
    expected = groups.std(dim=0, unbiased=False).mean(dim=(1, 2, 3))  # [2]: one value per group
    assert out.shape == (6, 3, 3, 3)
    torch.testing.assert_close(out[:, 2, 0, 0], expected.repeat(3), atol=1e-4, rtol=1e-4)


# -- path length ------------------------------------------------------------------------------


def g_context(generator: torch.nn.Module, n: int = 4, dtype: torch.dtype = torch.float32) -> GContext:
    latents = torch.randn(n, 6, dtype=dtype)
    return GContext(
        real_logits=lambda: torch.zeros(n), targets=Targets(), step=0, progress=0.0,
        generator=generator, latents=latents, fake=generator(latents),
    )


def test_the_path_length_penalty_is_the_deviation_of_jacobian_norms_from_their_running_mean() -> None:
    generator = tiny_generator().double().eval()  # eval: no mixing or random noise, so G is a function of w
    penalty = PathLength(PathLengthOptions(weight=2.0, decay=0.3, batch_shrink=1))
    penalty.pl_mean = torch.tensor(0.25)  # float32, as lengths are (computed in float32 under autocast too)
    ctx = g_context(generator, dtype=torch.float64)
    assert ctx.latents is not None
    torch.manual_seed(7)
    value = penalty.g_penalty(ctx)
    torch.manual_seed(7)
    noise = torch.randn(4, 1, 8, 8, dtype=torch.float64) / 8  # / sqrt(H * W)
    ws = generator.styles(ctx.latents).detach()
    jacobian = torch.autograd.functional.jacobian(generator.synthesis, ws)  # [N, C, H, W, N, num_ws, w_dim]
    lengths = torch.stack(
        [
            torch.einsum("chw,chwld->ld", noise[i], jacobian[i, :, :, :, i]).square().sum(1).mean().sqrt()
            for i in range(4)
        ]
    )
    mean = 0.25 + 0.3 * (lengths.mean() - 0.25)
    torch.testing.assert_close(value, (2.0 * (lengths - mean).square().mean()).float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(penalty.pl_mean, mean.float())


def penalty_gradients(weight: float, generator: torch.nn.Module) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    penalty = PathLength(PathLengthOptions(weight=weight))
    penalty.pl_mean = torch.tensor(5.0)  # far from the lengths, so the penalty pulls
    generator.zero_grad(set_to_none=True)
    penalty.g_penalty(g_context(generator)).backward()
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in generator.named_parameters()}


@pytest.mark.parametrize("network", ["stylegan2", "other"])
def test_the_path_length_penalty_changes_gs_gradient_through_w_or_else_through_z(network) -> None:
    generator: torch.nn.Module = tiny_generator().train()
    if network == "other":  # no mapping network: the Jacobian is taken with respect to z
        torch.manual_seed(0)
        generator = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 8, 8)))
    without = penalty_gradients(0.0, generator)
    with_it = penalty_gradients(2.0, generator)
    assert all(g.abs().max() == 0 for g in without.values())
    reached = [n for n, g in with_it.items() if g.abs().max() > 0]
    if network == "stylegan2":
        assert any(n.startswith("mapping.") for n in reached) and any(n.startswith("synthesis.") for n in reached)
    else:
        assert reached == ["0.weight", "0.bias"]


def test_pl_mean_survives_a_weights_only_checkpoint_and_is_used_after_it() -> None:
    generator = tiny_generator().train()
    penalty = PathLength(PathLengthOptions(decay=0.5))
    for _ in range(2):
        penalty.g_penalty(g_context(generator))
    assert penalty.pl_mean > 0
    buffer = io.BytesIO()
    torch.save(penalty.state_dict(), buffer)
    restored = PathLength(PathLengthOptions(decay=0.5))
    restored.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert torch.equal(restored.pl_mean, penalty.pl_mean)
    ctx = g_context(generator)
    torch.manual_seed(1)
    a = penalty.g_penalty(ctx)
    torch.manual_seed(1)
    assert torch.equal(restored.g_penalty(ctx), a)


# -- the contract, and a run ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "datasets"),
    [
        ("generator", "stylegan2", ["mnist-5k:size=16", "mnist-5k:size=28"]),
        ("discriminator", "stylegan2", ["mnist-5k:size=16", "mnist-5k:size=28"]),
        ("regularizer", "path-length", None),
    ],
)
def test_check_component_passes(kind, name, datasets) -> None:
    check_component(kind, name, datasets=datasets)


def test_stylegan2_trains_with_path_length_and_lazy_r1_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "run", "--gen", "stylegan2:width=4,z_dim=8,w_dim=8", "--disc", "stylegan2:width=4", "--reg", "path-length",
        "--reg", "r1:gamma=1,every=16", "--data", "mnist-5k", "--steps", "2", "--batch-size", "8",
        "--log-every", "1", "--metric", "none", "--device", "cpu", "-q", "--out", str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.stderr)
    assert "done: 2 steps" in result.output and (out / "samples.png").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in records if "penalty/g/path-length" in r or "penalty/r1" in r}
    assert set(steps) == {1}  # step 0 (logged as 1) ran both lazy phases; step 1 neither
    assert steps[1]["penalty/g/path-length"] >= 0 and math.isfinite(steps[1]["penalty/r1"])

    def sample(*flags: str) -> torch.Tensor:
        raw = tmp_path / "samples.pt"
        sampled = CliRunner().invoke(app, ["sample", str(out), "--n", "3", "--out", str(raw), "--device", "cpu", *flags])
        assert sampled.exit_code == 0, (sampled.output, sampled.stderr)
        return torch.load(raw, weights_only=True)

    plain, average, half = sample(), sample("--truncation", "0"), sample("--truncation", "0.5")
    assert not torch.allclose(plain[0], plain[1]), "untruncated: a sample per latent"
    torch.testing.assert_close(average, average[:1].expand(3, -1, -1, -1))  # psi 0: the average image only
    for a, b in ((half, plain), (half, average)):
        assert not torch.allclose(a, b)
    trained = load_trained(out, device="cpu")
    trained.draw(3, seed=0, truncation=0.0)
    torch.testing.assert_close(trained.draw(3, seed=0), plain)  # truncation is for that draw alone
    for psi, why in (("nan", "must be a number from 0 to 2"), ("2.5", "must be a number from 0 to 2")):
        refused = CliRunner().invoke(app, ["sample", str(out), "--truncation", psi, "--device", "cpu"])
        assert refused.exit_code == 2 and why in refused.output + refused.stderr, psi


def test_sampling_with_truncation_refuses_a_generator_without_it(tmp_path: Path) -> None:
    out = tmp_path / "mlp"
    args = ["run", "--gen", "mlp", "--data", "ring-8", "--steps", "1", "--metric", "none", "--device", "cpu", "-q"]
    assert CliRunner().invoke(app, [*args, "--out", str(out)]).exit_code == 0
    result = CliRunner().invoke(app, ["sample", str(out), "--truncation", "0.7", "--device", "cpu"])
    text = result.output + result.stderr
    assert result.exit_code == 2 and "Traceback" not in text
    assert "--truncation: generator 'mlp' has no truncation trick; generators that have it: stylegan2" in text


class IgnoresPsi(torch.nn.Module):
    """Declares the trait 'truncation' and keeps a psi it never reads."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim, self.truncation_psi = 2, 1.0
        self.net = torch.nn.Linear(2, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Ignoring:
    @hookimpl
    def ganforge_register_generators(self, register: Any) -> None:
        register("ignores-psi", lambda options, ctx: IgnoresPsi(), summary="ignores psi",
                 requires={"vector"}, traits={"truncation"})


def test_check_component_refuses_a_truncation_that_does_nothing() -> None:
    from ganforge_core.plugins import Plugins

    message = r"generator 'ignores-psi' on dataset 'ring-8': truncation: truncation_psi 0 in eval mode still gives"
    with pytest.raises(AssertionError, match=message):
        check_component("generator", "ignores-psi", plugins=Plugins(extra=[("ignores", Ignoring())]), datasets=["ring-8"])
