"""``ada``: the augmentations, p's adaptation at the documented rate, its state, and the engine's hand-over.

p moves by ``sign(r_t - target) * batch_size * interval / (kimg * 1000)`` after every
``interval`` D updates, within [0, 1]; every op is the identity at p = 0, changes the
batch at p = 1 and passes gradients; the engine hands D main's logits to
``observe_d_logits`` and logs ``extra_stats`` as ``NAME/key``; p survives a checkpoint
and a resume; under torchrun the ranks agree on p; the run logs ``ada/p`` and the live
view shows it.
"""

from __future__ import annotations

import copy
import json
import math
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from ganforge_ada.adaptive import ADA
from ganforge_ada.augment import augment, cutout
from ganforge_ada.options import OPS, ADAOptions
from ganforge_core import ConfigError, Regularizer, RunConfig, resolve
from ganforge_core import checkpoint as ckpt
from ganforge_core.cli import app
from ganforge_core.errors import ContractError
from ganforge_core.plugins import get_plugins
from ganforge_core.reporting import ProgressView, format_stats
from ganforge_core.run import Run
from ganforge_core.session import Interrupted, train
from ganforge_core.testing import check_regularizer
from support import caching_registry
from test_reliability import SignalAt, assert_identical, records
from test_reliability_resume import plugins_with

REGISTRY = caching_registry()
TINY_DCGAN = {"generator": "dcgan:width=4,z_dim=4", "discriminator": "dcgan:width=4", "dataset": "mnist-5k:size=16"}


def ada(batch_size: int = 16, **options: Any) -> ADA:
    return ADA(ADAOptions(**options), batch_size, torch.device("cpu"))


def logits_with_rt(rt: float, n: int = 20) -> torch.Tensor:
    """n real logits whose mean sign is ``rt`` (a multiple of 2/n)."""
    positive = round(n * (1 + rt) / 2)
    return torch.tensor([1.0] * positive + [-1.0] * (n - positive))


# -- the heuristic ------------------------------------------------------------------


def test_p_rises_when_d_is_overconfident_and_falls_otherwise_by_the_documented_step_per_interval() -> None:
    reg = ada(batch_size=16, interval=3, kimg=1.0, p=0.5)
    step = 16 * 3 / 1000  # batch_size * interval / (kimg * 1000)
    fake = torch.zeros(20)
    for _ in range(2):
        reg.observe_d_logits(logits_with_rt(1.0), fake)
        assert float(reg.p) == 0.5, "p moves only once an interval is complete"
    reg.observe_d_logits(logits_with_rt(0.8), fake)  # r_t over the interval: (1 + 1 + 0.8) / 3 > 0.6
    assert float(reg.p) == pytest.approx(0.5 + step, abs=1e-7)
    for rt in (1.0, 0.0, 0.2):  # r_t = 0.4 < 0.6: D is not overfitting, p falls
        reg.observe_d_logits(logits_with_rt(rt), fake)
    assert float(reg.p) == pytest.approx(0.5, abs=1e-7)
    for rt in (0.0, -1.0, 0.5):
        reg.observe_d_logits(logits_with_rt(rt), fake)
    assert float(reg.p) == pytest.approx(0.5 - step, abs=1e-7)
    assert reg.updates == 9


def test_p_stays_within_0_and_1() -> None:
    high, low = ada(interval=1, kimg=1.0, p=0.99), ada(interval=1, kimg=1.0, p=0.01)
    for _ in range(3):
        high.observe_d_logits(logits_with_rt(1.0), torch.zeros(20))
        low.observe_d_logits(logits_with_rt(-1.0), torch.zeros(20))
    assert (float(high.p), float(low.p)) == (1.0, 0.0)


def test_fixed_p_does_not_adapt_but_rt_is_still_reported() -> None:
    reg = ada(interval=1, kimg=1.0, p=0.3, fixed=True)
    reg.observe_d_logits(logits_with_rt(1.0), torch.zeros(20))
    stats = reg.extra_stats()
    assert float(reg.p) == pytest.approx(0.3) and float(stats["p"]) == pytest.approx(0.3)
    assert float(stats["rt"]) == 1.0


def test_annealed_p_follows_r3gans_cosine_from_p_to_p_to_whatever_d_does() -> None:
    """R3GAN's schedule (brownvc/R3GAN train.py: cosine_decay_with_warmup from 0 to 0.55 on CIFAR-10)."""
    reg = ada(interval=1, kimg=1.0, anneal="cosine", p_to=0.55)
    x = rgb_batch(4)
    for progress, want in ((0.0, 0.0), (0.25, 0.55 * (1 - math.cos(math.pi / 4)) / 2), (0.5, 0.275), (1.0, 0.55)):
        reg.transform_d_input(x, progress)
        reg.observe_d_logits(logits_with_rt(1.0), torch.zeros(20))  # an overconfident D moves nothing
        assert float(reg.p) == pytest.approx(want, abs=1e-6), progress
        assert float(reg.extra_stats()["rt"]) == 1.0
    linear = ada(anneal="linear", p=0.5, p_to=0.1)
    linear.transform_d_input(x, 0.75)
    assert float(linear.p) == pytest.approx(0.2, abs=1e-6)


def test_fixed_and_anneal_together_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="fixed=true keeps p still and anneal moves it"):
        REGISTRY.get("regularizer", "ada").validate({"fixed": True, "anneal": "cosine", "p_to": 0.5})


def test_state_dict_round_trip_continues_mid_interval() -> None:
    reg = ada(interval=4, kimg=1.0, p=0.2)
    for rt in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0):  # one adjustment, then two updates into the next interval
        reg.observe_d_logits(logits_with_rt(rt), torch.zeros(20))
    state = reg.state_dict()
    copied = ada(interval=4, kimg=1.0, p=0.0)
    copied.load_state_dict(state)
    assert float(copied.p) == float(reg.p) == pytest.approx(0.2 + 0.064)
    for r in (reg, copied):  # two overconfident updates complete the interval: both adjust together
        for rt in (1.0, 1.0):
            r.observe_d_logits(logits_with_rt(rt), torch.zeros(20))
    assert float(copied.p) == float(reg.p) == pytest.approx(0.2 + 2 * 0.064)


# -- the augmentations ---------------------------------------------------------------


def rgb_batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 12, 12, generator=generator) * 2 - 1


@pytest.mark.parametrize("op", OPS)
def test_each_op_is_the_identity_at_p_0_and_changes_the_batch_at_p_1(op: str) -> None:
    x = rgb_batch()
    torch.manual_seed(1)
    assert torch.equal(augment(x, 0.0, (op,)), x)
    changed = augment(x, 1.0, (op,))
    assert changed.shape == x.shape
    assert not torch.equal(changed, x), f"{op} at p=1 left the batch as it was"


def test_the_whole_pipeline_is_the_identity_at_p_0_on_grey_and_non_square_images() -> None:
    torch.manual_seed(2)
    for x in (rgb_batch(), torch.rand(8, 1, 10, 14)):
        assert torch.equal(augment(x, torch.tensor(0.0), OPS), x)


@pytest.mark.parametrize("op", OPS)
def test_each_op_passes_gradients_to_its_input(op: str) -> None:
    x = rgb_batch(8).requires_grad_(True)
    torch.manual_seed(3)
    weights = torch.randn(8, 3, 12, 12)
    (augment(x, 1.0, (op,)) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0, f"no gradient reaches the images through {op}"


def test_xflip_at_p_1_flips_a_sample_left_right_or_keeps_it_as_adas_xflip_does() -> None:
    x = rgb_batch(32)
    torch.manual_seed(4)
    out = augment(x, 1.0, ("xflip",))
    flipped = [torch.equal(o, torch.flip(s, dims=[2])) for o, s in zip(out, x, strict=True)]
    kept = [torch.equal(o, s) for o, s in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < len(x), "ADA draws the flip per sample: some flipped, some not"


def test_rotate90_turns_by_whole_quarter_turns() -> None:
    x = rgb_batch(32)
    torch.manual_seed(5)
    out = augment(x, 1.0, ("rotate90",))
    turns = [
        next(k for k in range(4) if torch.equal(o, torch.rot90(s, k, dims=(1, 2)))) for o, s in zip(out, x, strict=True)
    ]
    assert set(turns) == {0, 1, 2, 3}


def test_cutout_zeroes_a_rectangle_half_the_side_around_its_centre_in_the_samples_it_picks() -> None:
    x = torch.ones(3, 1, 8, 8)
    centre = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.0, 1.0]])
    out = cutout(x, torch.tensor([True, False, True]), centre)
    want = torch.ones(8, 8)
    want[2:6, 2:6] = 0  # pixel centres (i + 0.5) / 8 within 0.25 of 0.5: i = 2..5
    assert torch.equal(out[0, 0], want)
    assert torch.equal(out[1], x[1]), "a sample the mask skips is kept exactly"
    corner = torch.ones(8, 8)
    corner[6:, :2] = 0  # centre (x 0, y 1): the bottom-left quarter of the rectangle is in the image
    assert torch.equal(out[2, 0], corner)
    torch.manual_seed(0)
    cut = (augment(torch.ones(400, 1, 8, 8), 1.0, ("cutout",)) == 0).flatten(1).sum(1)
    assert int(cut.max()) == 16 and int(cut.min()) >= 4, "every sample loses between a quarter and a sixteenth"


def test_color_p_scales_the_probability_of_each_colour_op() -> None:
    x = rgb_batch(4000)
    torch.manual_seed(4)
    touched = lambda y: (y != x).flatten(1).any(1).float().mean().item()  # noqa: E731
    assert torch.equal(augment(x, 1.0, ("brightness",), color_p=0.0), x)
    assert touched(augment(x, 1.0, ("brightness",), color_p=0.5)) == pytest.approx(0.5, abs=0.03)
    assert touched(augment(x, 0.6, ("brightness",), color_p=0.5)) == pytest.approx(0.3, abs=0.03)
    assert touched(augment(x, 0.6, ("xint",), color_p=0.0)) > 0.5, "color_p leaves the other ops alone"


def test_hue_and_saturation_leave_grey_images_alone_and_lumaflip_negates_them() -> None:
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    torch.manual_seed(6)
    torch.testing.assert_close(augment(x, 1.0, ("hue", "saturation")), x)
    flipped = augment(x, 1.0, ("lumaflip",))
    negated = [torch.allclose(o, -s) for o, s in zip(flipped, x, strict=True)]
    kept = [torch.equal(o, s) for o, s in zip(flipped, x, strict=True)]
    assert all(n or k for n, k in zip(negated, kept, strict=True)) and any(negated)


# -- configuration ------------------------------------------------------------------------


def test_ada_refuses_vector_data_in_one_line() -> None:
    config = RunConfig.model_validate(
        {"generator": "mlp", "discriminator": "mlp", "dataset": "ring-8:n=256", "regularizers": ["ada"]}
    )
    with pytest.raises(ConfigError) as refused:
        resolve(config, REGISTRY)
    message = str(refused.value)
    assert "\n" not in message and "'ada'" in message and "image" in message and "'ring-8'" in message


def test_ops_are_named_with_plus_and_an_unknown_one_is_refused() -> None:
    assert ada(ops="blit+hue").ops == ("xflip", "rotate90", "xint", "hue")
    with pytest.raises(ConfigError, match="unknown augmentation 'twirl'"):
        REGISTRY.get("regularizer", "ada").validate({"ops": "xflip+twirl"})


# -- the engine and the run ------------------------------------------------------------


def build_run(tmp_path: Path, regularizers: list[str]) -> Run:
    config = RunConfig.model_validate(
        {**TINY_DCGAN, "regularizers": regularizers, "batch_size": 16, "steps": 4, "device": "cpu", "metrics": []}
    )
    return Run(resolve(config, REGISTRY), get_plugins(), tmp_path)


def test_the_engine_hands_d_mains_logits_to_observe_d_logits_and_logs_extra_stats(tmp_path: Path) -> None:
    run = build_run(tmp_path, ["ada:interval=1000"])  # p = 0: D sees the batches as they are
    engine, reg = run.engine, run.regularizers["ada"]
    assert isinstance(reg, ADA)
    real = engine.batches.next()
    before = copy.deepcopy(run.discriminator)
    stats = engine.d_phase(real, step=0)
    signs = before(real).detach().sign()
    assert reg.updates == 1 and float(reg._signs) == float(signs.sum()) and float(reg._seen) == len(real)
    assert float(stats["ada/rt"]) == pytest.approx(float(signs.mean()))
    assert float(stats["ada/p"]) == 0.0
    engine.g_phase(real, step=0)
    assert reg.updates == 1, "observe_d_logits is called in D main only"


def logged_cli_run(regularizer: str, steps: int) -> list[dict[str, Any]]:
    """`ganforge run` of the tiny dcgan with one regularizer, logging every step, in the current directory:
    the logged records, events left out."""
    result = CliRunner().invoke(
        app,
        [
            "run", "--gen", TINY_DCGAN["generator"], "--disc", TINY_DCGAN["discriminator"],
            "--data", TINY_DCGAN["dataset"], "--reg", regularizer, "--steps", str(steps),
            "--batch-size", "16", "--log-every", "1", "--metric", "none", "--device", "cpu", "--out", "run",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return [r for r in map(json.loads, Path("run/metrics.jsonl").read_text().splitlines()) if "event" not in r]


def test_a_run_logs_p_moving_by_the_documented_step_toward_its_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ganforge run --gen dcgan --reg ada --data mnist-5k --steps 3`, small, with p adapting every step."""
    monkeypatch.chdir(tmp_path)
    logged = logged_cli_run("ada:p=0.5,interval=1,kimg=1", steps=3)
    assert [r["step"] for r in logged] == [1, 2, 3]
    p = [0.5] + [r["ada/p"] for r in logged]
    for before, after, record in zip(p, p[1:], logged, strict=False):
        # interval 1, one D step per G step: the logged r_t is the very r_t p followed
        assert after - before == pytest.approx(math.copysign(0.016, record["ada/rt"] - 0.6), abs=1e-6), record


def test_a_run_with_r3gans_augmentation_logs_p_on_its_cosine_over_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/stabilisers.md's R3GAN recipe from the CLI: p is the cosine at each step's run progress."""
    monkeypatch.chdir(tmp_path)
    logged = logged_cli_run("ada:ops=bgc+cutout,color_p=0.5,anneal=cosine,p_to=0.55", steps=5)
    want = [0.55 * (1 - math.cos(math.pi * step / 4)) / 2 for step in range(5)]  # G step s of 5: progress s / 4
    assert [r["ada/p"] for r in logged] == pytest.approx(want, abs=1e-6)


def resume_config(out: Path) -> RunConfig:
    return RunConfig.model_validate(
        {
            **TINY_DCGAN,
            "regularizers": ["ada:p=0.4,interval=2,kimg=0.5"],
            "batch_size": 16,
            "steps": 6,
            "log_every": 1,
            "device": "cpu",
            "metrics": [],
            "out": str(out),
        }
    )


def test_p_survives_a_resume_and_the_run_adapts_as_one_never_stopped(tmp_path: Path) -> None:
    reference = train(resume_config(tmp_path / "reference"), plugins=plugins_with(), quiet=True)
    stopped = tmp_path / "stopped"
    with pytest.raises(Interrupted):  # after step 3: D update 3, mid-way through an interval of 2
        train(resume_config(stopped), plugins=plugins_with(("stop", SignalAt(3, signal.SIGINT))), quiet=True)
    resumed = train(None, resume=stopped, plugins=plugins_with(), quiet=True)
    want, got = ckpt.load_safe(reference.checkpoint), ckpt.load_safe(resumed.checkpoint)
    assert_identical(want["regularizers"], got["regularizers"], "regularizers")
    assert_identical(want["discriminator"], got["discriminator"], "discriminator")
    p = [r["ada/p"] for r in records(stopped) if "event" not in r]
    assert p == [r["ada/p"] for r in records(tmp_path / "reference") if "event" not in r]
    assert len(set(p)) > 1, "p moved during the run"


def test_the_progress_view_shows_p() -> None:
    view = ProgressView(total=10, start=0, live=False, quiet=True)
    view.update(5, {"loss/d": 1.0, "ada/p": 0.25})
    assert "ADA p 0.25" in view.status()
    assert "ada/p=0.25" in format_stats({"ada/p": 0.25})


def test_the_engine_refuses_a_statistic_that_is_not_a_scalar_naming_the_regularizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = build_run(tmp_path, ["ada"])
    monkeypatch.setattr(run.regularizers["ada"], "extra_stats", lambda: {"p": torch.zeros(2)})
    with pytest.raises(ContractError, match=r"'ada'.*extra_stats\(\)\['p'\] returned .*a statistic returns a scalar"):
        run.engine.d_phase(run.engine.batches.next(), step=0)


class GraphInStats(Regularizer):
    def __init__(self, value: Any) -> None:
        self.value = value

    def extra_stats(self) -> dict[str, Any]:
        return {"x": self.value}


@pytest.mark.parametrize(
    "value", [torch.ones((), requires_grad=True) * 2, torch.zeros(3), 0.5], ids=["with-graph", "vector", "float"]
)
def test_check_regularizer_refuses_statistics_that_are_not_detached_scalars(value: Any) -> None:
    check_regularizer(GraphInStats(torch.tensor(0.5)), torch.randn(4, 2))  # a detached scalar passes
    with pytest.raises(AssertionError, match=r"extra_stats\(\)\['x'\] must be a detached scalar"):
        check_regularizer(GraphInStats(value), torch.randn(4, 2))


def _rank_observes(rank: int, address: str, out: str) -> None:
    """One of two gloo ranks: D calls every real real on rank 0 and half of them on rank 1."""
    torch.distributed.init_process_group("gloo", init_method=address, rank=rank, world_size=2)
    try:
        reg = ada(batch_size=32, interval=1, kimg=1.0, p=0.5)
        reg.observe_d_logits(logits_with_rt(1.0 if rank == 0 else 0.0), torch.zeros(20))
        Path(out, f"p{rank}").write_text(repr(float(reg.p)))
    finally:
        torch.distributed.destroy_process_group()


def test_under_torchrun_the_ranks_add_their_signs_and_hold_the_same_p(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    # A file in tmp_path, not a TCP port: no other test (or pytest-xdist worker) can take it
    # between choosing it and the ranks meeting there.
    address = (tmp_path / "rendezvous").as_uri()
    mp.spawn(_rank_observes, args=(address, str(tmp_path)), nprocs=2, join=True)
    # r_t over both ranks is (1 + 0) / 2 = 0.5 < 0.6: p falls on both (alone, rank 0's would rise)
    p = [float((tmp_path / f"p{rank}").read_text()) for rank in range(2)]
    assert p == pytest.approx([0.5 - 0.032, 0.5 - 0.032], abs=1e-7)
