"""The plugin's own tests: ganforge's contract through ganforge_core.testing, then each component's maths.

They import the plugin as installed (``pip install ./examples/ganforge-hamming``),
so the registry finds it through its ``ganforge`` entry point.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from ganforge_core import ConfigError, Dataset, DContext, GContext, RunConfig, RunContext, Targets, get_registry
from ganforge_core import resolve, train
from ganforge_core.testing import TinyCritic, TinyGenerator, build_context, check_component, check_isolation, smoke_train
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import ganforge_hamming
from ganforge_hamming.code import NOT_A_CODEWORD, classify, codeword_bits, codeword_counts
from ganforge_hamming.command import table
from ganforge_hamming.csv_logger import CsvLogger
from ganforge_hamming.dataset import build_dataset
from ganforge_hamming.metric import codeword_statistics
from ganforge_hamming.options import CsvOptions, HammingOptions, PathLengthOptions, ZeroGPOptions
from ganforge_hamming.path_length import PathLength
from ganforge_hamming.picture import MARKER
from ganforge_hamming.zero_gp import ZeroGP

COMPONENTS = [
    ("dataset", "hamming-7"),
    ("metric", "codewords"),
    ("logger", "csv"),
    ("regularizer", "z-path-length"),
    ("regularizer", "zero-gp"),
]
# z-path-length refuses BatchNorm in G (mlp's default); both networks are small.
ON_HAMMING = {
    "generator": "mlp:batchnorm=false",
    "discriminator": "mlp",
    "dataset": "hamming-7",
    "regularizers": ["z-path-length", "zero-gp"],
}
# The parity checks of the code: bit i of a codeword (0-based) takes part in check j where H[j][i] is 1.
PARITY_CHECKS = torch.tensor(
    [
        [1, 1, 0, 1, 1, 0, 0],
        [1, 0, 1, 1, 0, 1, 0],
        [0, 1, 1, 1, 0, 0, 1],
    ]
)


def samples_of(*rows: str) -> torch.Tensor:
    """Sign vectors from bit strings: "0100000" -> [-1, +1, -1, ...]."""
    return torch.tensor([[1.0 if bit == "1" else -1.0 for bit in row] for row in rows])


# -- the contract ----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), COMPONENTS)
def test_component_meets_the_ganforge_contract(kind: str, name: str) -> None:
    check_component(kind, name)


def test_installed_plugin_provides_the_five_components() -> None:
    registry = get_registry()
    for kind, name in COMPONENTS:
        assert registry.get(kind, name).plugin == "hamming"  # type: ignore[arg-type]
    assert registry.get("dataset", "hamming-7").render is ganforge_hamming.render


def test_importing_the_plugin_imports_neither_torch_nor_numpy() -> None:
    # ganforge imports every plugin to list its commands, for `ganforge --help` too.
    code = "import sys, ganforge_hamming; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy'}))"
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert listed.stdout.strip() == "[]"


@pytest.mark.parametrize("regularizers", [["z-path-length"], ["zero-gp"], ["z-path-length", "zero-gp"]])
def test_d_and_g_phases_stay_isolated(regularizers: list[str]) -> None:
    check_isolation(**{**ON_HAMMING, "regularizers": regularizers})


def test_trains_end_to_end_and_resumes_exactly(tmp_path: Path) -> None:
    # every=2: the lazy phases run (steps 0 and 2), and the resumed half must run them on the same steps.
    regularizers = ["z-path-length:every=2", "zero-gp:every=2"]
    result = smoke_train(**{**ON_HAMMING, "regularizers": regularizers}, loggers=["csv"], steps=4, out=tmp_path)
    assert set(result.results) == {"codewords/valid", "codewords/covered", "codewords/kl"}
    with Image.open(result.samples) as picture:
        assert picture.text.get("Title") == MARKER  # drawn by hamming-7's own renderer
    with (result.run_dir / "metrics.csv").open() as file:
        assert [int(row["step"]) for row in csv.DictReader(file)] == [1, 2, 3, 4]


def test_path_length_refuses_a_generator_with_batchnorm() -> None:
    registry = get_registry()
    config = RunConfig(generator="mlp", dataset="hamming-7", regularizers=["z-path-length"])
    with pytest.raises(ConfigError, match="BatchNorm ties each sample to the whole batch"):
        resolve(config, registry)
    resolve(config.model_copy(update={"generator": RunConfig(generator="mlp:batchnorm=false").generator}), registry)


# -- the code ----------------------------------------------------------------------


def test_the_16_codewords_are_the_hamming_7_4_code() -> None:
    words = codeword_bits()
    assert words.shape == (16, 7) and set(words.flatten().tolist()) == {0, 1}
    assert len({tuple(w) for w in words.tolist()}) == 16
    assert ((words @ PARITY_CHECKS.T) % 2 == 0).all()  # every parity check holds
    distances = [int((a != b).sum()) for a, b in itertools.combinations(words, 2)]
    assert min(distances) == 3  # corrects one flipped bit
    as_set = {tuple(w) for w in words.tolist()}
    assert all(tuple(((a + b) % 2).tolist()) in as_set for a, b in itertools.product(words, words))  # linear
    # Perfect: every one of the 128 vectors is within one flip of exactly one codeword.
    for vector in itertools.product((0, 1), repeat=7):
        near = (words != torch.tensor(vector)).sum(1) <= 1
        assert int(near.sum()) == 1, vector
    # Systematic: codeword i starts with i's four bits.
    assert [int("".join(map(str, w[:4].tolist())), 2) for w in words] == list(range(16))


def test_classify_reads_the_sign_of_each_value() -> None:
    words = codeword_bits()
    signs = words.float() * 2 - 1
    assert classify(signs).tolist() == list(range(16))
    assert classify(signs * 0.3).tolist() == list(range(16))  # magnitudes do not matter
    one_flip = signs.clone()
    one_flip[:, 2] *= -1
    assert classify(one_flip).tolist() == [NOT_A_CODEWORD] * 16
    assert classify(torch.zeros(1, 7)).tolist() == [0]  # 0 reads as -1: the all-zero codeword
    assert codeword_counts(samples_of("0000000", "0000000", "1111111", "1000000")).tolist() == [2] + [0] * 14 + [1, 1]


# -- the dataset -------------------------------------------------------------------


def test_dataset_draws_the_codewords_uniformly() -> None:
    n = 16_000
    data = build_dataset(HammingOptions(n=n), build_context())
    assert data.samples.shape == (n, 7) and data.samples.dtype == torch.float32
    assert set(data.samples.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(classify(data.samples), data.labels)  # no flips: each sample is the codeword sent
    counts = codeword_counts(data.samples)[:16].double()
    sd = math.sqrt(n * (1 / 16) * (15 / 16))  # binomial
    assert ((counts - n / 16).abs() < 5 * sd).all(), counts
    again = build_dataset(HammingOptions(n=n), build_context())
    other = build_dataset(HammingOptions(n=n, seed=1), build_context())
    assert torch.equal(again.samples, data.samples) and not torch.equal(other.samples, data.samples)


def test_flipped_bits_leave_a_codeword_as_often_as_the_weight_enumerator_says() -> None:
    n, p = 20_000, 0.1
    data = build_dataset(HammingOptions(n=n, flip=p), build_context())
    sent = codeword_bits()[data.labels].float() * 2 - 1
    assert float((data.samples != sent).double().mean()) == pytest.approx(p, abs=0.005)  # sd 0.0008
    # A received word is a codeword when the flips spell one: A_0 = 1, A_3 = 7, A_4 = 7, A_7 = 1.
    q = 1 - p
    expected = q**7 + 7 * p**3 * q**4 + 7 * p**4 * q**3 + p**7
    valid = 1 - float(codeword_counts(data.samples)[NOT_A_CODEWORD]) / n
    assert valid == pytest.approx(expected, abs=0.02)  # sd 0.0035


# -- the metric --------------------------------------------------------------------


def kl_from_uniform(counts: list[int]) -> float:
    """sum over the 16 codewords of 1/16 log((1/16) / p), p the counts plus 1/2 each, normalised."""
    total = sum(counts) + 8
    return sum(math.log((1 / 16) / ((c + 0.5) / total)) for c in counts) / 16


def metric_on(samples: torch.Tensor) -> dict[str, float]:
    metric = get_registry().get("metric", "codewords")
    built = metric.build(metric.validate({"samples": len(samples)}), build_context((7,)))
    return built.compute(lambda n: samples[:n], Dataset(samples))


def test_metric_on_the_data_finds_every_codeword_evenly() -> None:
    data = build_dataset(HammingOptions(), build_context())
    values = metric_on(data.samples[:2048])
    assert values["valid"] == 1.0
    assert values["covered"] == 16.0
    # 2 * 2048 * kl is about chi-squared with 15 degrees of freedom: 0.02 is 82, far in its tail.
    assert 0 <= values["kl"] < 0.02


def test_metric_on_one_codeword_alone() -> None:
    n = 512
    values = metric_on(-torch.ones(n, 7))  # 0000000 is a codeword
    assert values == {"valid": 1.0, "covered": 1.0, "kl": pytest.approx(kl_from_uniform([n] + [0] * 15))}


def test_metric_with_no_codeword_gives_the_worst_kl_there_is_for_the_sample_size() -> None:
    n = 512
    values = metric_on(samples_of("1000000").repeat(n, 1))
    assert values["valid"] == 0.0 and values["covered"] == 0.0
    assert values["kl"] == pytest.approx(kl_from_uniform([n] + [0] * 15))
    half = metric_on(torch.cat([-torch.ones(1, 7), samples_of("1000000").repeat(n - 1, 1)]))
    assert half["valid"] == 1 / n and half["kl"] < values["kl"]


def test_a_codeword_is_covered_from_a_quarter_of_its_share_under_the_data() -> None:
    n = 6400  # a quarter of the share n/16 is 100
    counts = torch.tensor([100, 99] + [0] * 14 + [n - 199])
    assert codeword_statistics(counts)["covered"] == 1.0


# -- the picture -------------------------------------------------------------------


def test_renderer_draws_the_cells_and_the_codeword_histogram(tmp_path: Path) -> None:
    data = build_dataset(HammingOptions(n=600, flip=0.05), build_context())
    path = tmp_path / "samples.png"
    ganforge_hamming.render(data.samples, path, info=data.info)
    with Image.open(path) as picture:
        assert picture.size == (1100, 550)
        assert picture.text.get("Title") == MARKER
        rgb = picture.convert("RGB")
    colours = {colour for _, colour in rgb.getcolors(maxcolors=1 << 24)}
    assert (0, 0, 0) in colours and (255, 255, 255) in colours  # the bit cells


# -- the penalties -----------------------------------------------------------------


def d_context(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> DContext:
    return DContext(critic, real=real, fake=fake, targets=Targets(), step=0, progress=0.0)


@pytest.mark.parametrize("gamma", [1.0, 0.25, 10.0])
def test_zero_gp_on_a_linear_critic_is_gamma_half_the_squared_norm_of_w(gamma: float) -> None:
    torch.manual_seed(0)
    critic = nn.Linear(7, 1)
    w = critic.weight.detach().flatten()
    penalty = ZeroGP(ZeroGPOptions(gamma=gamma)).d_penalty(d_context(critic, torch.randn(9, 7), torch.randn(9, 7)))
    assert penalty.item() == pytest.approx(gamma / 2 * float(w.square().sum()), rel=1e-6)
    penalty.backward()  # create_graph: the penalty trains D
    assert torch.allclose(critic.weight.grad.flatten(), gamma * w)


def test_zero_gp_takes_each_sample_at_a_uniform_point_between_real_and_fake() -> None:
    # D(x) = x^2 / 2 has gradient x: at x_hat = t * 1 + (1 - t) * 0 = t the penalty is E[t^2] / 2 = 1/6.
    n = 100_000
    torch.manual_seed(0)
    critic = lambda x: x.square().sum(1) / 2  # noqa: E731
    penalty = ZeroGP(ZeroGPOptions(gamma=1.0)).d_penalty(d_context(critic, torch.ones(n, 1), torch.zeros(n, 1)))
    assert penalty.item() == pytest.approx(1 / 6, abs=0.002)  # sd 0.0005


def g_context(generator: nn.Module, latents: torch.Tensor, labels: torch.Tensor | None = None) -> GContext:
    fake = generator(latents) if labels is None else generator(latents, labels)
    return GContext(
        real_logits=lambda: torch.zeros(len(latents)),
        targets=Targets(),
        step=0,
        progress=0.0,
        generator=generator,
        latents=latents,
        fake=fake,
        labels=labels,
    )


def test_path_length_on_a_linear_generator_against_its_jacobian() -> None:
    torch.manual_seed(0)
    generator = nn.Linear(3, 7, bias=False)  # G(z) = A z: J = A for every z, and J^T y = A^T y
    A = generator.weight.detach().double()
    regularizer = PathLength(PathLengthOptions(weight=2.0, decay=0.9), torch.device("cpu"))
    mean = 0.0
    for call in range(3):
        latents = torch.randn(16, 3)
        torch.manual_seed(100 + call)
        penalty = regularizer.g_penalty(g_context(generator, latents))
        torch.manual_seed(100 + call)  # the same y the penalty drew
        y = torch.randn(16, 7).double() / math.sqrt(7)
        lengths = (y @ A).norm(dim=1)  # |A^T y| per sample
        mean = 0.9 * mean + 0.1 * float(lengths.mean())
        assert regularizer.mean.item() == pytest.approx(mean, rel=1e-5)
        assert penalty.item() == pytest.approx(2.0 * float((lengths - mean).square().mean()), rel=1e-4)
    generator.zero_grad()
    penalty.backward()  # create_graph: the penalty trains G
    assert generator.weight.grad is not None and generator.weight.grad.abs().sum() > 0


def test_path_length_runs_a_conditional_generator_with_its_labels() -> None:
    torch.manual_seed(0)
    linear, embedding = nn.Linear(3, 7, bias=False), nn.Embedding(4, 7)
    generator = lambda z, labels: linear(z) + embedding(labels)  # noqa: E731 - the labels shift, J is A
    regularizer = PathLength(PathLengthOptions(), torch.device("cpu"))
    ctx = g_context(generator, torch.randn(8, 3), torch.tensor([0, 1, 2, 3] * 2))
    torch.manual_seed(1)
    lengths = regularizer.lengths(ctx)
    torch.manual_seed(1)
    y = torch.randn(8, 7) / math.sqrt(7)
    assert torch.allclose(lengths, (y @ linear.weight.detach()).norm(dim=1), rtol=1e-5)


def test_path_length_resumes_from_its_state_exactly() -> None:
    torch.manual_seed(0)
    generator = TinyGenerator((7,))
    first = PathLength(PathLengthOptions(), torch.device("cpu"))
    for _ in range(3):
        first.g_penalty(g_context(generator, torch.randn(8, generator.z_dim)))
    resumed = PathLength(PathLengthOptions(), torch.device("cpu"))
    resumed.load_state_dict(first.state_dict())
    latents = torch.randn(8, generator.z_dim)
    values = []
    for regularizer in (first, resumed):
        torch.manual_seed(7)
        values.append((regularizer.g_penalty(g_context(generator, latents)).item(), regularizer.mean.item()))
    assert values[0] == values[1] and values[0][1] != 0.0


def test_both_penalties_run_lazily_at_their_interval() -> None:
    registry = get_registry()
    for name, attribute in (("z-path-length", "g_penalty_every"), ("zero-gp", "d_penalty_every")):
        component = registry.get("regularizer", name)
        assert getattr(component.build(component.validate({}), build_context((7,))), attribute) == 4
        assert getattr(component.build(component.validate({"every": 16}), build_context((7,))), attribute) == 16
        assert getattr(component.build(component.validate({"every": 1}), build_context((7,))), attribute) == 1


# -- the csv logger ----------------------------------------------------------------


def run_context(run_dir: Path, start_step: int = 0) -> RunContext:
    return RunContext(
        config=RunConfig(generator="mlp", dataset="hamming-7", steps=8, out=run_dir),
        run_dir=run_dir,
        device=torch.device("cpu"),
        start_step=start_step,
        generator=TinyGenerator((7,)),
        discriminator=TinyCritic(7),
        dataset=Dataset(torch.zeros(4, 7)),
    )


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def test_csv_logger_widens_its_header_and_writes_the_results(tmp_path: Path) -> None:
    logger = CsvLogger(CsvOptions(), run_context(tmp_path))
    logger.log(2, {"loss/g": 0.5, "loss/d": 1.0})
    assert read_csv(tmp_path / "metrics.csv") == (["step", "loss/d", "loss/g"], [{"step": "2", "loss/d": "1.0", "loss/g": "0.5"}])
    logger.log(4, {"loss/d": 0.1 + 0.2, "loss/g": 0.6, "penalty/zero-gp": 1e-7})
    logger.log(6, {"loss/d": 0.8, "loss/g": 0.7})
    logger.end(6, {"codewords/valid": 0.75, "codewords/covered": 12.0})
    logger.close()
    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == ["step", "loss/d", "loss/g", "penalty/zero-gp"]
    assert rows == [
        {"step": "2", "loss/d": "1.0", "loss/g": "0.5", "penalty/zero-gp": ""},
        {"step": "4", "loss/d": repr(0.1 + 0.2), "loss/g": "0.6", "penalty/zero-gp": "1e-07"},
        {"step": "6", "loss/d": "0.8", "loss/g": "0.7", "penalty/zero-gp": ""},
    ]
    assert float(rows[1]["loss/d"]) == 0.1 + 0.2  # every digit kept
    assert read_csv(tmp_path / "results.csv") == (
        ["step", "codewords/covered", "codewords/valid"],
        [{"step": "6", "codewords/covered": "12.0", "codewords/valid": "0.75"}],
    )


def test_csv_logger_resumed_keeps_the_rows_up_to_the_checkpoint(tmp_path: Path) -> None:
    first = CsvLogger(CsvOptions(file="log.csv"), run_context(tmp_path))
    for step in (2, 4, 6):
        first.log(step, {"loss/d": float(step)})
    first.close()  # the run stopped at step 6; its newest checkpoint is step 4
    resumed = CsvLogger(CsvOptions(file="log.csv"), run_context(tmp_path, start_step=4))
    assert [row["step"] for row in read_csv(tmp_path / "log.csv")[1]] == ["2", "4"]
    resumed.log(6, {"loss/d": 60.0})
    resumed.log(8, {"loss/d": 80.0})
    resumed.end(8, {})  # stopped by a signal: no final metrics
    resumed.close()
    assert read_csv(tmp_path / "log.csv") == (
        ["step", "loss/d"],
        [{"step": "2", "loss/d": "2.0"}, {"step": "4", "loss/d": "4.0"}, {"step": "6", "loss/d": "60.0"}, {"step": "8", "loss/d": "80.0"}],
    )
    assert not (tmp_path / "results.csv").exists()
    fresh = CsvLogger(CsvOptions(file="log.csv"), run_context(tmp_path))  # a new run starts a new file
    fresh.log(1, {"loss/g": 1.0})
    fresh.close()
    assert read_csv(tmp_path / "log.csv") == (["step", "loss/g"], [{"step": "1", "loss/g": "1.0"}])


@pytest.mark.parametrize(("file", "reason"), [("results.csv", "final metrics"), ("logs/a.csv", "pattern"), ("a.txt", "pattern")])
def test_csv_logger_refuses_a_file_it_cannot_own(file: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        get_registry().get("logger", "csv").validate({"file": file})


# -- the command -------------------------------------------------------------------


def test_table_lists_the_16_codewords_with_their_counts() -> None:
    counts = torch.tensor([5] + [0] * 14 + [3, 2])
    lines = table(counts).splitlines()
    assert len(lines) == 1 + 16 + 1 + 1
    assert lines[1].split() == ["0", "0000000", "5", "0.5000"]
    assert lines[15].split() == ["14", "1110000", "0", "0.0000"]
    assert lines[16].split() == ["15", "1111111", "3", "0.3000"]
    assert lines[17].split() == ["no", "codeword", "2", "0.2000"]
    assert lines[18] == "valid: 0.8000 (8 of 10 samples); codewords seen: 2 of 16"


@pytest.fixture
def cli() -> typer.Typer:
    """ganforge's own command line, which found the installed plugin's command through its hook."""
    from ganforge_core.cli import app

    return app


def test_command_refuses_a_missing_run_in_one_line(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["codewords", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output == f"error: no run directory or checkpoint at {tmp_path / 'nowhere'}\n"


def test_command_refuses_a_run_not_trained_on_hamming_7(cli: typer.Typer, tmp_path: Path) -> None:
    ring = train(generator="mlp", dataset="ring-8:n=256", steps=1, batch_size=8, device="cpu", out=tmp_path / "ring", quiet=True)
    result = CliRunner().invoke(cli, ["codewords", str(ring.run_dir), "--n", "10"])
    assert result.exit_code == 2
    assert result.output == (
        f"error: ganforge codewords needs a run trained on hamming-7; {ring.run_dir} trained on 'ring-8'\n"
    )
    assert json.loads((ring.run_dir / "config.json").read_text())["dataset"]["name"] == "ring-8"
