"""A step's phases: D main, D reg, G main, G reg (stylegan2-ada's), and StyleGAN2's Adam adjustment.

A G penalty adds exactly its gradient to G's; a lazy penalty of interval k runs
on exactly the D steps (G steps) whose counter k divides, as an update of its
own, multiplied by k; a network with a lazy penalty gets Adam with ``lr * c`` and
``betas ** c``, ``c = k / (k + 1)``. Isolation per phase is in tests/test_isolation.py;
exact resume with lazy R1 in tests/test_reliability_resume.py.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from ganforge_core import RunConfig, resolve
from ganforge_core.engine import lazy_ratio
from ganforge_core.plugins import get_plugins
from ganforge_core.run import Run
from lazy_penalties import NAME, register_into
from support import caching_registry
from test_reliability import TINY_MLP

REGISTRY = register_into(caching_registry())
RUN_DIR = Path(tempfile.gettempdir()) / "ganforge-phases-never-written"


def build_run(regularizers: list[str], d_steps: int = 1, **fields: Any) -> Run:
    config = RunConfig.model_validate(
        {
            **TINY_MLP,
            "loss": "non-saturating",
            "regularizers": regularizers,
            "scheduler": f"constant:d_steps={d_steps}",
            "batch_size": 32,
            "steps": 20,
            "device": "cpu",
            "metrics": [],
            **fields,
        }
    )
    return Run(resolve(config, REGISTRY), get_plugins(), RUN_DIR)


def grads(output: Tensor, network: nn.Module) -> list[Tensor]:
    return list(torch.autograd.grad(output, list(network.parameters()), retain_graph=True))


def assert_grads(network: nn.Module, expected: list[Tensor]) -> None:
    for (name, p), want in zip(network.named_parameters(), expected, strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


# -- G penalties ------------------------------------------------------------------------


def test_a_g_penalty_adds_exactly_its_gradient_to_gs_gradient() -> None:
    run = build_run([f"{NAME}:d_weight=0,g_weight=0.7"])
    engine = run.engine
    real = engine.batches.next()
    G, D = copy.deepcopy(run.generator), copy.deepcopy(run.discriminator)
    rng = torch.get_rng_state()
    stats = engine.g_phase(real, step=0)
    torch.set_rng_state(rng)  # the same latents, drawn the way the phase draws them
    fake = G(torch.randn(len(real), engine.z_dim))
    loss = nn.functional.softplus(-D(fake)).mean()  # non-saturating
    penalty = 0.7 * (fake.square().mean() + D(real).square().mean())
    loss_grads, penalty_grads = grads(loss, G), grads(penalty, G)
    assert_grads(run.generator, [a + b for a, b in zip(loss_grads, penalty_grads, strict=True)])
    assert any(b.abs().max() > 1e-6 for b in penalty_grads), "the penalty must change G's gradient"
    assert float(stats[f"penalty/g/{NAME}"]) == pytest.approx(float(penalty.detach()))
    assert float(stats["loss/g"]) == pytest.approx(float((loss + penalty).detach()))
    assert run.regularizers[NAME].g_calls == [0]  # type: ignore[attr-defined]


def test_a_lazy_g_penalty_is_its_own_update_multiplied_by_its_interval() -> None:
    run = build_run([f"{NAME}:d_weight=0,g_weight=0.7,g_every=3"])
    engine = run.engine
    real = engine.batches.next()
    G, D = copy.deepcopy(run.generator), copy.deepcopy(run.discriminator)
    rng = torch.get_rng_state()
    stats = engine.g_reg_phase(real, 0, interval=3)
    torch.set_rng_state(rng)
    penalty = 0.7 * (G(torch.randn(len(real), engine.z_dim)).square().mean() + D(real).square().mean())
    assert_grads(run.generator, grads(3 * penalty, G))
    assert float(stats[f"penalty/g/{NAME}"]) == pytest.approx(3 * float(penalty.detach()))
    assert all(p.grad is None for p in run.discriminator.parameters()), "G reg wrote D's gradients"


def test_a_lazy_g_penalty_runs_on_every_kth_g_step_only() -> None:
    run = build_run([f"{NAME}:d_weight=0,g_weight=0.7,g_every=3"])
    for step in range(8):
        run.engine.step(step)
    assert run.regularizers[NAME].g_calls == [0, 3, 6]  # type: ignore[attr-defined]
    assert run.engine.g_intervals == (3,) and run.engine.d_intervals == ()


# -- lazy D penalties -------------------------------------------------------------------


@pytest.mark.parametrize(("d_steps", "every"), [(1, 1), (1, 3), (2, 3), (2, 4), (3, 2)])
def test_a_lazy_d_penalty_runs_on_the_d_steps_its_interval_divides(d_steps: int, every: int) -> None:
    run = build_run([f"{NAME}:d_every={every},g_weight=0"], d_steps=d_steps)
    steps = 6
    for step in range(steps):
        run.engine.step(step)
    # D step i of G step s is D step s * d_steps + i; the penalty sees the G step.
    expected = [counter // d_steps for counter in range(steps * d_steps) if counter % every == 0]
    assert run.regularizers[NAME].d_calls == expected  # type: ignore[attr-defined]


def test_a_lazy_d_penalty_is_its_own_update_multiplied_by_its_interval() -> None:
    run = build_run([f"{NAME}:d_every=3,g_weight=0"])
    engine = run.engine
    real = engine.batches.next()
    D, G = copy.deepcopy(run.discriminator), copy.deepcopy(run.generator)
    rng = torch.get_rng_state()
    stats = engine.d_reg_phase(real, 0, interval=3)
    torch.set_rng_state(rng)  # the phase's own fakes
    with torch.no_grad():
        fake = G(torch.randn(len(real), engine.z_dim))
    penalty = 0.5 * (D(real).square().mean() + D(fake).square().mean())
    assert_grads(run.discriminator, grads(3 * penalty, D))
    assert float(stats[f"penalty/{NAME}"]) == pytest.approx(3 * float(penalty.detach()))
    assert all(p.grad is None for p in run.generator.parameters()), "D reg wrote G's gradients"
    assert all(torch.equal(a, b) for a, b in zip(G.parameters(), run.generator.parameters(), strict=True))
    # D main leaves the lazy penalty to D reg.
    engine.d_phase(real, 0)
    assert run.regularizers[NAME].d_calls == [0]  # type: ignore[attr-defined]


def test_a_reg_phase_gives_every_parameter_a_gradient_zero_where_its_penalty_does_not_reach() -> None:
    # R1 differentiates D's input gradient, which no bias of D's last layer enters:
    # stylegan2-ada's `logits * 0` term, here `0 * sum(parameters)`, gives it an exact 0,
    # so DDP finds every gradient it waits for and Adam steps all of D together.
    run = build_run(["r1:every=2"])
    engine = run.engine
    engine.step(0)  # D main, then D reg
    last_bias = list(run.discriminator.parameters())[-1]
    assert last_bias.dim() == 1 and last_bias.numel() == 1
    assert last_bias.grad is not None and torch.equal(last_bias.grad, torch.zeros_like(last_bias))
    assert all(p.grad is not None for p in run.discriminator.parameters())
    assert {int(s["step"]) for s in engine.opt_d.state_dict()["state"].values()} == {2}


def test_a_lazy_penalty_logs_its_term_averaged_over_the_d_steps() -> None:
    run = build_run([f"{NAME}:d_every=4,g_weight=0"], d_steps=2)
    with_reg, without = run.engine.step(0), run.engine.step(1)  # D steps 0 and 1; 2 and 3
    assert f"penalty/{NAME}" not in without
    assert float(with_reg[f"penalty/{NAME}"]) > 0
    run.engine.read_stats()
    logged = []
    for step in range(2, 6):  # D steps 4 to 11: the penalty runs on 4 and 8
        stats = run.engine.step(step)
        logged.append(float(stats.get(f"penalty/{NAME}", torch.tensor(0.0))))
    assert run.engine.read_stats()[f"penalty/{NAME}"] == pytest.approx(sum(logged) / 4)


# -- Adam ------------------------------------------------------------------------------


def test_a_network_with_a_lazy_penalty_gets_stylegan2s_adam_adjustment() -> None:
    run = build_run([f"{NAME}:d_every=4,g_every=2"], lr_d=1e-3, lr_g=2e-3, betas=[0.5, 0.99])
    d_group, g_group = run.engine.opt_d.param_groups[0], run.engine.opt_g.param_groups[0]
    c_d, c_g = 4 / 5, 2 / 3
    assert d_group["lr"] == 1e-3 * c_d and tuple(d_group["betas"]) == (0.5**c_d, 0.99**c_d)
    assert g_group["lr"] == 2e-3 * c_g and tuple(g_group["betas"]) == (0.5**c_g, 0.99**c_g)


def test_without_lazy_penalties_adam_is_as_configured() -> None:
    run = build_run([f"{NAME}:d_every=1,g_every=1"], lr_d=1e-3, lr_g=2e-3, betas=[0.5, 0.99])
    for opt, lr in ((run.engine.opt_d, 1e-3), (run.engine.opt_g, 2e-3)):
        assert opt.param_groups[0]["lr"] == lr and tuple(opt.param_groups[0]["betas"]) == (0.5, 0.99)


@pytest.mark.parametrize("fused", [True, False])
def test_adam_is_fused_on_the_cpu_unless_turned_off(fused: bool) -> None:
    run = build_run([], fused_adam=fused)
    for opt in (run.engine.opt_d, run.engine.opt_g):
        assert bool(opt.defaults["fused"]) is fused
    assert ("fused Adam" in run.fast.describe()) is fused


@pytest.mark.parametrize("wanted", [True, False])
def test_image_runs_train_channels_last_on_the_cpu_unless_turned_off(wanted: bool) -> None:
    run = build_run(
        [], generator="dcgan:width=4", discriminator="dcgan:width=4", dataset="mnist-5k", channels_last=wanted
    )
    layers = [m for net in (run.generator, run.discriminator) for m in net.modules()]
    convs = [m.weight for m in layers if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    wide = [w for w in convs if w.shape[1] > 1 and w.shape[2] * w.shape[3] > 1]  # where the two layouts differ
    assert len(wide) >= 3
    assert [w.is_contiguous(memory_format=torch.channels_last) for w in wide] == [wanted] * len(wide)
    assert ("channels-last" in run.fast.describe()) is wanted
    batch = run.engine.batches.draw().samples
    assert batch.is_contiguous(memory_format=torch.channels_last if wanted else torch.contiguous_format)


def test_a_run_on_points_keeps_the_default_layout() -> None:
    assert "channels-last" not in build_run([]).fast.describe()


def test_lazy_r1_adjusts_ds_adam_and_only_ds() -> None:
    run = build_run(["r1:every=16"], lr_d=1e-3, lr_g=1e-3, betas=[0.0, 0.99])
    c = 16 / 17
    assert run.engine.opt_d.param_groups[0]["lr"] == 1e-3 * c
    assert tuple(run.engine.opt_d.param_groups[0]["betas"]) == (0.0, 0.99**c)
    assert run.engine.opt_g.param_groups[0]["lr"] == 1e-3
    assert run.engine.d_intervals == (16,)


def test_the_ratio_counts_one_extra_update_per_distinct_interval() -> None:
    assert lazy_ratio([]) == lazy_ratio([1, 1]) == 1.0
    assert lazy_ratio([4]) == 4 / 5 and lazy_ratio([16, 16, 1]) == 16 / 17
    assert lazy_ratio([4, 8]) == pytest.approx(1 / (1 + 1 / 4 + 1 / 8), rel=1e-15)


# -- CUDA graphs, one per kind of step (with fakes: the dispatch, on the CPU) ------------


class FakeGraph:
    """Stands in for torch.cuda.CUDAGraph: capture runs the step's Python once (here eagerly,
    so the step happens at capture as on CUDA), and a replay runs no Python at all."""

    def __init__(self) -> None:
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1


class FakeStream:
    def wait_stream(self, other: object) -> None:
        pass


@pytest.fixture()
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", lambda graph: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", FakeStream)


@pytest.mark.usefixtures("fake_cuda")
def test_each_kind_of_step_gets_its_own_graph_after_its_own_warm_up() -> None:
    from ganforge_core.engine import GRAPH_WARMUP

    assert GRAPH_WARMUP == 3  # the steps below assume it
    run = build_run([f"{NAME}:d_every=2,g_weight=0"])
    engine = run.engine
    engine.cuda_graph = True
    with_reg, without = engine.step_kind(0), engine.step_kind(1)
    assert with_reg == (((2,),), ()) and without == (((),), ())
    for step in range(12):
        engine.step(step)
    # Eager on 0-5 (three of each kind), captured on 6 and 7, replayed from 8 on:
    # Python (and so the penalty's call log) runs on the eager steps and the captures only.
    assert run.regularizers[NAME].d_calls == [0, 2, 4, 6]  # type: ignore[attr-defined]
    assert set(engine._graphs) == {with_reg, without}
    assert {kind: c.graph.replays for kind, c in engine._graphs.items()} == {with_reg: 3, without: 3}
    # A statistic a lazy phase writes lives in its kind's graph only.
    assert f"penalty/{NAME}" in engine._graphs[with_reg].stats
    assert f"penalty/{NAME}" not in engine._graphs[without].stats


@pytest.mark.usefixtures("fake_cuda")
def test_kinds_past_max_graphs_stay_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    import ganforge_core.engine as engine_module

    monkeypatch.setattr(engine_module, "MAX_GRAPHS", 2)
    run = build_run([f"{NAME}:d_every=2,g_every=3"])  # 4 kinds: step % 6 in {0}, {1, 5}, {2, 4}, {3}
    engine = run.engine
    engine.cuda_graph = True
    for step in range(48):
        engine.step(step)
    assert len(engine._graphs) == 2
    eager_kinds = {engine.step_kind(s) for s in range(6)} - set(engine._graphs)
    assert len(eager_kinds) == 2
    late = [s for s in range(36, 48) if engine.step_kind(s) in eager_kinds]
    g_calls = run.regularizers[NAME].g_calls  # type: ignore[attr-defined]
    assert late and late == [s for s in g_calls if s >= 36]  # the eager kinds are the two with G reg


# -- D main scores a per-sample D's real and fake batches in one call ---------------------


@pytest.mark.parametrize("conditional", [False, True])
def test_a_per_sample_d_scores_real_and_fake_in_one_call_with_the_update_of_two(conditional: bool) -> None:
    fields: dict[str, Any] = {"conditional": True, "dataset": "mnist-5k"} if conditional else {}
    joint, apart = build_run([], **fields), build_run([], **fields)  # the same seed: the same weights
    assert joint.engine.per_sample_critic  # mlp's D declares the trait 'per-sample'
    apart.engine.per_sample_critic = False
    real, labels = joint.engine.batches.draw()
    called: dict[str, list[int]] = {"joint": [], "apart": []}
    for name, run in (("joint", joint), ("apart", apart)):
        run.discriminator.register_forward_hook(lambda m, i, o, n=name: called[n].append(i[0].shape[0]))
        torch.manual_seed(7)  # the same fakes
        stats = run.engine.d_phase(real, 0, labels)
        assert float(stats["loss/d"]) > 0
    assert called == {"joint": [64], "apart": [32, 32]}
    for mine, theirs in zip(joint.discriminator.parameters(), apart.discriminator.parameters(), strict=True):
        assert mine.grad is not None and theirs.grad is not None
        assert theirs.grad.abs().sum() > 0
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)  # the Adam step both took


def test_a_d_without_the_trait_is_called_once_per_batch() -> None:
    run = build_run([], generator="dcgan:width=4", discriminator="dcgan:width=4", dataset="mnist-5k")
    assert not run.engine.per_sample_critic  # BatchNorm couples dcgan's samples
    sizes: list[int] = []
    run.discriminator.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    run.engine.d_phase(run.engine.batches.draw().samples, 0)
    assert sizes == [32, 32]


@pytest.mark.parametrize("norm", ["layer", "none"])
def test_dcgans_d_without_batchnorm_is_per_sample_and_meets_the_check(norm: str) -> None:
    from ganforge_core.testing import check_component

    check_component("discriminator", "dcgan", options={"norm": norm, "width": 4})
    run = build_run(["r1:every=4"], generator="dcgan:width=4", discriminator=f"dcgan:width=4,norm={norm}",
                    dataset="mnist-5k")
    assert run.engine.per_sample_critic
    sizes: list[int] = []
    run.discriminator.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    run.engine.d_phase(run.engine.batches.draw().samples, 0)
    assert sizes == [64]


def test_r1_makes_dcgans_auto_norm_layer_norm_and_so_per_sample() -> None:
    run = build_run(["r1"], generator="dcgan:width=4", discriminator="dcgan:width=4", dataset="mnist-5k")
    assert run.plan.discriminator.options.norm == "layer" and run.engine.per_sample_critic


@pytest.mark.parametrize(
    ("fields", "note"),
    [
        ({"regularizers": ["r1:every=4"]}, ""),  # a lazy penalty keeps channels-last (the quick preset)
        ({"regularizers": ["r1"]}, "regularizer 'r1' differentiates D's input every D step"),
        ({"loss": "wgan-gp"}, "loss 'wgan-gp' differentiates D's input every D step"),
        ({"generator": "r3gan", "discriminator": "r3gan", "loss": "rpgan"}, "R3GANGenerator holds grouped convolutions"),
    ],
)
def test_a_cpu_run_keeps_the_default_layout_where_channels_last_measured_slower(fields: dict[str, Any], note: str) -> None:
    networks = {"generator": "dcgan:width=4", "discriminator": "dcgan:width=4"}
    run = build_run(fields.pop("regularizers", []), **{**networks, "dataset": "mnist-5k:size=16", **fields})
    assert run.fast.layout_note == note
    assert run.fast.channels_last is (note == "")
    assert ("channels-last" in run.fast.describe().split(";")[0]) is (note == "")
    weight = next(
        m.weight for m in run.discriminator.modules()
        if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1 and m.weight.shape[2] * m.weight.shape[3] > 1
    )  # where the two layouts differ
    assert weight.is_contiguous(memory_format=torch.channels_last) is (note == "")
