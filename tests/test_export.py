"""Using a trained generator: ``ganforge sample --interpolate K`` and ``ganforge export``.

Tiny runs of every built-in generator (unconditional and conditional, one with
spectral norm folded into G and an EMA copy) are trained once per module; the
tests then check the interpolation's latents and pictures, and that what
``export`` writes computes what the run's own sampler computes: the
safetensors weights through :func:`ganforge_core.export.load_generator` and
through huggingface_hub's ``PyTorchModelHubMixin.from_pretrained``
(:class:`ganforge_core.hub.HubGenerator`, from a local directory and from a
Hub cache, no network), the torch.export and TorchScript programs in this
process and in a Python that cannot import ganforge at all, and the ONNX file
in onnxruntime. ONNX export is slow (seconds per model), so one model (the
conditional dcgan with spectral norm and EMA) takes that path, and the guide's
own ``--format onnx`` command another.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import Tensor, nn
from typer.testing import CliRunner

from ganforge_core import RunConfig, hookimpl
from ganforge_core.cli import app
from ganforge_core.errors import CheckpointError
from ganforge_core.errors import ConfigError
from ganforge_core.export import (
    CONFIG,
    ONNX,
    PROGRAM,
    SCRIPT,
    WEIGHTS,
    export_generator,
    load_generator,
    standalone_generator,
)
from ganforge_core.hub import HubGenerator
from ganforge_core.interpolation import fractions, slerp
from ganforge_core.plugins import Plugins, get_plugins
from ganforge_core.trained import Trained, load_trained
from ganforge_core.session import train

TINY_MLP = {"generator": "mlp:hidden=8,depth=1", "discriminator": "mlp:hidden=8,depth=1"}
DIGITS = "mnist-5k:size=16"
RUNS: dict[str, dict[str, Any]] = {
    "mlp-ema": {**TINY_MLP, "dataset": "ring-8:n=256", "regularizers": ["ema:decay=0.5"]},
    "mlp-cond": {**TINY_MLP, "dataset": DIGITS, "conditional": True},
    "dcgan": {"generator": "dcgan:width=4,z_dim=8", "discriminator": "dcgan:width=4", "dataset": DIGITS},
    "dcgan-cond-sn-ema": {
        "generator": "dcgan:width=4,z_dim=8",
        "discriminator": "dcgan:width=4",
        "dataset": DIGITS,
        "conditional": True,
        "regularizers": ["spectral-norm:generator=true", "ema:decay=0.5"],
    },
    "resnet": {"generator": "resnet:width=4,z_dim=8", "discriminator": "resnet:width=4", "dataset": DIGITS},
    "resnet-cond": {
        "generator": "resnet:width=4,z_dim=8",
        "discriminator": "resnet:width=4",
        "dataset": DIGITS,
        "conditional": True,
    },
}


def ganforge(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def ok(*args: str | Path) -> Any:
    result = ganforge(*args)
    assert result.exit_code == 0, result.output
    return result


def one_error_line(result: Any, mention: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:") and mention in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    dirs = {}
    for name, fields in RUNS.items():
        config = RunConfig(**fields, steps=3, batch_size=8, device="cpu", sample_every=0, metrics=[], out=root / name)
        dirs[name] = train(config, quiet=True).run_dir
    return dirs


@pytest.fixture(scope="module")
def exports(run_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each run exported once with the CLI (EMA where the run keeps one)."""
    root = tmp_path_factory.mktemp("exports")
    for name, run_dir in run_dirs.items():
        ok("export", run_dir, "--out", root / name)
    return {name: root / name for name in run_dirs}


def load(run_dir: Path) -> Trained:
    return load_trained(run_dir, get_plugins(), "cpu")


def inputs(run: Trained, n: int, seed: int = 5) -> tuple[Tensor, ...]:
    source = torch.Generator().manual_seed(seed)
    z = torch.randn(n, run.z_dim, generator=source)
    if not run.plan.config.conditional:
        return (z,)
    return z, torch.randint(run.num_classes, (n,), generator=source)


# -- slerp --------------------------------------------------------------------------

vectors = st.integers(1, 64).flatmap(
    lambda d: st.tuples(st.integers(0, 2**31 - 1), st.just(d), st.floats(0.1, 10), st.floats(0.1, 10))
)


@settings(max_examples=60, deadline=None)
@given(vectors, st.integers(2, 12))
def test_slerp_keeps_its_ends_and_moves_the_norm_linearly_at_constant_angular_speed(
    drawn: tuple[int, int, float, float], steps: int
) -> None:
    seed, dim, scale_a, scale_b = drawn
    source = torch.Generator().manual_seed(seed)
    a, b = torch.randn(3, dim, generator=source) * scale_a, torch.randn(3, dim, generator=source) * scale_b
    t = fractions(steps)
    path = slerp(a, b, t)
    assert path.shape == (3, steps, dim) and path.dtype == torch.float32
    assert torch.equal(path[:, 0], a) and torch.equal(path[:, -1], b)
    cos = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)
    curved = (1 - cos.abs()) > 1e-9  # parallel or opposite rows (all of them in 1D) are straight lines
    expected = (1 - t[None]) * a.double().norm(dim=1)[:, None] + t[None] * b.double().norm(dim=1)[:, None]
    torch.testing.assert_close(path.double().norm(dim=2)[curved], expected[curved], rtol=1e-5, atol=1e-5)
    straight = (1 - t[None, :, None]) * a.double()[:, None] + t[None, :, None] * b.double()[:, None]
    torch.testing.assert_close(path.double()[~curved], straight[~curved], rtol=1e-5, atol=1e-5)
    omega = torch.acos(cos.clamp(-1, 1))
    angle = torch.acos(torch.nn.functional.cosine_similarity(path.double(), a.double()[:, None], dim=2).clamp(-1, 1))
    # Each point's angle from a is t of the whole angle: constant angular speed.
    torch.testing.assert_close(angle[curved], (t[None] * omega[:, None])[curved], rtol=1e-4, atol=1e-4)


def test_slerp_stays_on_the_shell_where_a_straight_line_cuts_inside() -> None:
    a, b = torch.randn(1, 512), torch.randn(1, 512)
    b = b / b.norm() * a.norm()  # equal norms: slerp keeps that norm all the way
    middle = slerp(a, b, fractions(3))[0, 1]
    assert math.isclose(middle.norm().item(), a.norm().item(), rel_tol=1e-5)
    assert ((a + b) / 2).norm() < 0.8 * a.norm(), "near-orthogonal latents: the straight line's middle is shorter"


def test_slerp_between_parallel_or_opposite_latents_is_a_straight_line() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0]])
    for b in (2 * a, -a):
        path = slerp(a, b, fractions(5))
        assert torch.isfinite(path).all()
        torch.testing.assert_close(path[0, 2], (a[0] + b[0]) / 2)
    with pytest.raises(ValueError, match="at least 2"):
        fractions(1)


# -- ganforge sample --interpolate ----------------------------------------------------


def test_interpolation_rows_start_and_end_at_the_samples_of_twice_as_many(
    run_dirs: dict[str, Path], tmp_path: Path
) -> None:
    ring = run_dirs["mlp-ema"]
    result = ok("sample", ring, "--interpolate", "5", "--n", "3", "--seed", "7", "--out", tmp_path / "i.pt")
    assert "wrote 3 interpolations of 5 steps" in result.output
    ok("sample", ring, "--n", "6", "--seed", "7", "--out", tmp_path / "s.pt")
    paths, samples = torch.load(tmp_path / "i.pt"), torch.load(tmp_path / "s.pt")
    assert paths.shape == (3, 5, 2)
    torch.testing.assert_close(paths[:, 0], samples[:3])
    torch.testing.assert_close(paths[:, -1], samples[3:])
    assert not torch.allclose(paths[:, 1], paths[:, 0]), "the middle columns move"

    ok("sample", ring, "--interpolate", "5", "--n", "3", "--seed", "7", "--out", tmp_path / "again.npy")
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "again.npy")), paths), "same seed, same paths"
    ok("sample", ring, "--interpolate", "5", "--n", "3", "--seed", "8", "--out", tmp_path / "other.pt")
    assert not torch.allclose(torch.load(tmp_path / "other.pt"), paths)


def test_interpolation_latents_are_the_draws_joined_by_slerp(run_dirs: dict[str, Path]) -> None:
    run = load(run_dirs["dcgan"])
    paths, labels = run.interpolation_inputs(rows=4, steps=6, seed=3)
    assert paths.shape == (4, 6, run.z_dim) and labels is None
    ends, _ = run._draw_inputs(8, 3, None)
    assert torch.equal(paths[:, 0], ends[:4]) and torch.equal(paths[:, -1], ends[4:])
    norms, t = paths.norm(dim=2).double(), fractions(6)
    torch.testing.assert_close(norms, (1 - t) * norms[:, :1] + t * norms[:, -1:], rtol=1e-5, atol=1e-5)


def test_conditional_interpolation_keeps_the_label_and_ema_choice(run_dirs: dict[str, Path], tmp_path: Path) -> None:
    cond = run_dirs["dcgan-cond-sn-ema"]
    for flag in ("--ema", "--no-ema"):
        out = tmp_path / f"i{flag}.pt"
        ok("sample", cond, "--interpolate", "4", "--n", "2", "--label", "3", flag, "--out", out)
        ok("sample", cond, "--n", "4", "--label", "3", flag, "--out", tmp_path / f"s{flag}.pt")
        paths, samples = torch.load(out), torch.load(tmp_path / f"s{flag}.pt")
        assert paths.shape == (2, 4, 1, 16, 16)
        torch.testing.assert_close(paths[:, 0], samples[:2])
        torch.testing.assert_close(paths[:, -1], samples[2:])
    assert not torch.allclose(torch.load(tmp_path / "i--ema.pt"), torch.load(tmp_path / "i--no-ema.pt"))

    run = load(cond)
    _, labels = run.interpolation_inputs(rows=5, steps=3, seed=0)
    _, drawn = run._draw_inputs(10, 0, None)
    assert labels is not None and drawn is not None and torch.equal(labels, drawn[:5]), "a row keeps one class"
    one_error_line(ganforge("sample", cond, "--interpolate", "3", "--label", "10"), "--label must be in [0, 10)")


def test_interpolation_pictures(run_dirs: dict[str, Path], tmp_path: Path) -> None:
    ok("sample", run_dirs["dcgan"], "--interpolate", "7", "--out", tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as grid:  # 8 rows (the default) of 7 images of 16 px, 2 px apart
        assert grid.size == (7 * 18 + 2, 8 * 18 + 2)
    ok("sample", run_dirs["mlp-ema"], "--interpolate", "4", "--n", "2", "--out", tmp_path / "paths.png")
    with Image.open(tmp_path / "paths.png") as drawing:
        pixels = np.asarray(drawing.convert("RGB"))
    assert drawing.size == (512, 512)
    assert (pixels == 0).all(axis=2).any(), "black squares mark where the paths start"
    assert ((pixels[..., 0] > 200) & (pixels[..., 1] < 60)).any(), "red crosses mark the modes"


@pytest.mark.parametrize("k", ["1", "0", "-3"])
def test_a_bad_interpolation_length_is_one_error_line(run_dirs: dict[str, Path], k: str) -> None:
    one_error_line(ganforge("sample", run_dirs["mlp-ema"], "--interpolate", k), "--interpolate must be at least 2")


# -- ganforge export ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", list(RUNS))
def test_exported_programs_compute_what_the_run_samples(
    run_dirs: dict[str, Path], exports: dict[str, Path], name: str
) -> None:
    run, out = load(run_dirs[name]), exports[name]
    config = json.loads((out / CONFIG).read_text())
    assert config["files"] == {
        "weights": WEIGHTS,
        "config": CONFIG,
        "torch.export": PROGRAM,
        "torchscript": SCRIPT,
        "onnx": None,
    }, config["skipped"]
    assert config["skipped"] == {}
    given = inputs(run, 5)  # the programs were made at another batch size
    expected = run.generate(5, given[0], given[1] if len(given) > 1 else None, ema=True)
    program = torch.export.load(str(out / PROGRAM)).module()
    script = torch.jit.load(str(out / SCRIPT))
    with torch.no_grad():
        torch.testing.assert_close(program(*given), expected)
        torch.testing.assert_close(script(*given), expected)
        torch.testing.assert_close(load_generator(out)(*given), expected)
        one = tuple(x[:1] for x in given)
        torch.testing.assert_close(program(*one), expected[:1])


def test_the_config_says_how_to_use_the_generator(run_dirs: dict[str, Path], exports: dict[str, Path]) -> None:
    config = json.loads((exports["dcgan-cond-sn-ema"] / CONFIG).read_text())
    assert config["generator"]["name"] == "dcgan" and config["generator"]["options"] == {"z_dim": 8, "width": 4, "init": "dcgan"}
    assert config["data_shape"] == [1, 16, 16] and config["z_dim"] == 8
    assert config["conditional"] and config["num_classes"] == 10 and config["labels"]["dtype"] == "int64"
    assert config["ema"] is True and config["step"] == 3 and config["output"]["value_range"] == [-1.0, 1.0]
    assert config["latent"]["distribution"] == "standard normal" and config["call"] == "generator(z, labels)"
    assert config["ganforge_version"] and config["torch_version"]
    ring = json.loads((exports["mlp-ema"] / CONFIG).read_text())
    assert ring["output"]["value_range"] is None and ring["num_classes"] == 0 and ring["labels"] is None


def test_safetensors_hold_the_generator_state_exactly(run_dirs: dict[str, Path], exports: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    run = load(run_dirs["dcgan-cond-sn-ema"])
    generator, used_ema = standalone_generator(run, ema=True)
    assert used_ema and not any("parametrizations" in key for key in generator.state_dict())
    saved = load_file(str(exports["dcgan-cond-sn-ema"] / WEIGHTS))
    state = generator.state_dict()
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) and saved[k].dtype == state[k].dtype for k in state)
    rebuilt = load_generator(exports["dcgan-cond-sn-ema"]).state_dict()
    assert all(torch.equal(rebuilt[k], state[k]) for k in state)
    assert not load_generator(exports["dcgan-cond-sn-ema"]).training


def test_ema_and_no_ema_export_different_weights(run_dirs: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    source = run_dirs["mlp-ema"]
    result = ok("export", source, "--no-ema", "--out", tmp_path / "raw")
    assert "G's own weights" in result.output
    raw = load_file(str(tmp_path / "raw" / WEIGHTS))
    run = load(source)
    assert all(torch.equal(raw[k], v) for k, v in run.generator.state_dict().items())
    ok("export", source, "--out", tmp_path / "ema")
    average = load_file(str(tmp_path / "ema" / WEIGHTS))
    assert not all(torch.equal(raw[k], average[k]) for k in raw)
    assert json.loads((tmp_path / "raw" / CONFIG).read_text())["ema"] is False
    assert json.loads((tmp_path / "ema" / CONFIG).read_text())["ema"] is True


PLAIN_TORCH = """
import sys
sys.path.append({site!r})
try:
    import ganforge_core
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("ganforge_core was importable")
import torch
inputs = torch.load({inputs!r}, weights_only=True)
program = torch.export.load({program!r}).module()
script = torch.jit.load({script!r})
with torch.no_grad():
    outputs = {{"program": program(*inputs), "script": script(*inputs)}}
loaded = sorted(m for m in sys.modules if m.startswith("ganforge"))
assert not loaded, loaded
torch.save(outputs, {result!r})
"""


@pytest.mark.parametrize("name", ["mlp-ema", "resnet-cond"])
def test_the_programs_run_in_a_python_that_cannot_import_ganforge(
    run_dirs: dict[str, Path], exports: dict[str, Path], tmp_path: Path, name: str
) -> None:
    run, out = load(run_dirs[name]), exports[name]
    given = inputs(run, 4)
    torch.save(list(given), tmp_path / "inputs.pt")
    script = PLAIN_TORCH.format(
        site=sysconfig.get_paths()["purelib"],
        inputs=str(tmp_path / "inputs.pt"),
        program=str(out / PROGRAM),
        script=str(out / SCRIPT),
        result=str(tmp_path / "outputs.pt"),
    )
    # -I: no current directory, no PYTHON* variables, no user site; -S: no site-packages,
    # so no .pth file adds ganforge's editable install; only torch's directory is added back.
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = torch.load(tmp_path / "outputs.pt", weights_only=True)
    expected = run.generate(4, given[0], given[1] if len(given) > 1 else None)
    torch.testing.assert_close(outputs["program"], expected)
    torch.testing.assert_close(outputs["script"], expected)


class FixedBatchGenerator(nn.Module):
    """Reads its batch size as a Python int: neither tracing nor torch.export can keep the batch free."""

    z_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def forward(self, z: Tensor) -> Tensor:
        return self.linear(z) * torch.ones(int(z.shape[0]), 1)


class FixedBatch:
    @hookimpl
    def ganforge_register_generators(self, register):
        register("fixed-batch", lambda options, ctx: FixedBatchGenerator(), summary="for tests")


@pytest.fixture(scope="module")
def fixed_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Plugins]:
    """A run of a generator that no program keeps the batch size free in, and its plugins."""
    plugins = Plugins(extra=[("fixed-batch", FixedBatch())])
    out = tmp_path_factory.mktemp("fixed") / "run"
    config = RunConfig(
        generator="fixed-batch",
        discriminator=TINY_MLP["discriminator"],
        dataset="ring-8:n=256",
        steps=2,
        batch_size=8,
        device="cpu",
        sample_every=0,
        out=out,
    )
    train(config, plugins=plugins, quiet=True)
    return out, plugins


def test_a_generator_that_cannot_be_exported_is_skipped_with_a_note(
    fixed_batch: tuple[Path, Plugins], tmp_path: Path
) -> None:
    run_dir, plugins = fixed_batch
    exported = export_generator(load_trained(run_dir, plugins, "cpu"), tmp_path / "out")
    assert set(exported.skipped) == {"torch.export", "torchscript"}
    assert all(reason and "\n" not in reason for reason in exported.skipped.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [CONFIG, WEIGHTS]
    config_json = json.loads((tmp_path / "out" / CONFIG).read_text())
    assert config_json["skipped"] == exported.skipped
    assert config_json["files"]["torch.export"] is None and config_json["files"]["torchscript"] is None
    rebuilt = load_generator(tmp_path / "out", plugins=plugins)
    z = torch.randn(3, 2)
    torch.testing.assert_close(rebuilt(z), load_trained(run_dir, plugins, "cpu").generate(3, z))


def test_the_command_reports_a_skipped_program_in_one_note(
    run_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganforge_core import export

    def refuse(*args: Any) -> Any:
        raise RuntimeError("not exportable here\nsecond line")

    monkeypatch.setattr(export, "_torch_export", refuse)
    result = ok("export", run_dirs["mlp-ema"], "--out", tmp_path / "out")
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: no torch.export program for this generator: ")
    assert "(RuntimeError: not exportable here)" in notes[0]
    assert "second line" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / PROGRAM).exists() and (tmp_path / "out" / SCRIPT).exists()


def test_bad_sources_are_one_error_line(run_dirs: dict[str, Path], tmp_path: Path) -> None:
    one_error_line(ganforge("export", tmp_path / "nowhere", "--out", tmp_path / "a"), "no checkpoint at")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    one_error_line(ganforge("export", junk, "--out", tmp_path / "b"), "truncated or corrupt")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error_line(ganforge("export", empty, "--out", tmp_path / "c"), "no loadable checkpoint")
    (tmp_path / "file").write_text("x")
    one_error_line(ganforge("export", run_dirs["mlp-ema"], "--out", tmp_path / "file"), "is a file")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_load_generator_refuses_missing_and_corrupt_exports(exports: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a ganforge export"):
        load_generator(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / CONFIG).write_text((exports["dcgan"] / CONFIG).read_text())
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_generator(copy)
    (copy / WEIGHTS).write_bytes((exports["dcgan"] / WEIGHTS).read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(copy)
    (copy / WEIGHTS).write_bytes((exports["resnet"] / WEIGHTS).read_bytes())
    with pytest.raises(CheckpointError, match="does not fit generator 'dcgan'"):
        load_generator(copy)
    (copy / CONFIG).write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_generator(copy)


# -- the Hugging Face Hub's layout ----------------------------------------------------


def test_the_hub_mixin_loads_the_export_from_a_local_directory(
    run_dirs: dict[str, Path], exports: dict[str, Path]
) -> None:
    from huggingface_hub import PyTorchModelHubMixin

    run, out = load(run_dirs["dcgan-cond-sn-ema"]), exports["dcgan-cond-sn-ema"]
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG, WEIGHTS, PROGRAM, SCRIPT])
    assert HubGenerator.from_pretrained.__func__ is PyTorchModelHubMixin.from_pretrained.__func__  # type: ignore[attr-defined]
    model = HubGenerator.from_pretrained(out)
    assert isinstance(model, HubGenerator) and isinstance(model, PyTorchModelHubMixin)
    assert (model.z_dim, model.num_classes, model.data_shape, model.conditional) == (8, 10, (1, 16, 16), True)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    given = inputs(run, 6, seed=11)
    with torch.no_grad():
        torch.testing.assert_close(model(*given), run.generate(6, *given, ema=True), rtol=0, atol=0)
    expected, _ = standalone_generator(run, ema=True)
    assert model.generator.state_dict().keys() == expected.state_dict().keys()


def test_save_pretrained_writes_what_export_writes(exports: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out = exports["mlp-cond"]
    model = HubGenerator.from_pretrained(out)
    model.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / CONFIG).read_text()) == json.loads((out / CONFIG).read_text())
    saved, exported = load_file(str(tmp_path / "again" / WEIGHTS)), load_file(str(out / WEIGHTS))
    assert saved.keys() == exported.keys() and all(torch.equal(saved[k], exported[k]) for k in saved)
    given = (torch.randn(4, 2, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 3, 9, 3]))
    with torch.no_grad():
        torch.testing.assert_close(load_generator(tmp_path / "again")(*given), model(*given), rtol=0, atol=0)


def test_the_hub_mixin_loads_a_repository_from_the_hub_cache_offline(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    """What ``hf upload`` then ``from_pretrained("owner/name")`` reads, from a populated cache."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--someone--tiny-gan"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    for name in (CONFIG, WEIGHTS):
        (repo / "snapshots" / commit / name).write_bytes((exports["dcgan"] / name).read_bytes())
    model = HubGenerator.from_pretrained("someone/tiny-gan", cache_dir=tmp_path / "cache", local_files_only=True)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(z), load_generator(exports["dcgan"])(z), rtol=0, atol=0)


def test_the_hub_class_refuses_a_config_that_is_not_a_ganforge_export(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError, match="does not describe a ganforge generator export"):
        HubGenerator.from_pretrained(tmp_path)  # no config.json at all
    config = json.loads((exports["dcgan"] / CONFIG).read_text())
    (tmp_path / WEIGHTS).write_bytes((exports["dcgan"] / WEIGHTS).read_bytes())
    (tmp_path / CONFIG).write_text(json.dumps({**config, "format_version": 3}))
    with pytest.raises(CheckpointError, match="has export format 3; this ganforge reads 2"):
        HubGenerator.from_pretrained(tmp_path)
    del config["generator"]
    (tmp_path / CONFIG).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="lacks the generator's name"):
        HubGenerator.from_pretrained(tmp_path)
    config["generator"] = {"name": "dcgan", "options": {"z_dim": 8, "width": 8}}  # not the weights' width
    (tmp_path / CONFIG).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not fit generator 'dcgan'"):
        HubGenerator.from_pretrained(tmp_path)


def test_an_export_of_format_1_still_loads(exports: dict[str, Path], tmp_path: Path) -> None:
    """Before the Hub layout, ``export`` wrote generator.json and generator.safetensors."""
    config = json.loads((exports["resnet-cond"] / CONFIG).read_text())
    (tmp_path / "generator.json").write_text(json.dumps({**config, "format_version": 1}))
    (tmp_path / "generator.safetensors").write_bytes((exports["resnet-cond"] / WEIGHTS).read_bytes())
    given = (torch.randn(2, 8), torch.tensor([1, 7]))
    with torch.no_grad():
        torch.testing.assert_close(load_generator(tmp_path)(*given), load_generator(exports["resnet-cond"])(*given))
    (tmp_path / "generator.json").write_text(json.dumps(config))  # format 2 under the old name
    with pytest.raises(CheckpointError, match="has export format 2; this ganforge reads 1"):
        load_generator(tmp_path)


# -- ONNX --------------------------------------------------------------------------

# onnxruntime's CPU kernels add in another order than torch's; the float32 differences
# measured on the built-in generators are below 5e-7.
ONNX_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def test_the_onnx_program_computes_what_the_run_samples(run_dirs: dict[str, Path], tmp_path: Path) -> None:
    import onnxruntime

    run_dir = run_dirs["dcgan-cond-sn-ema"]
    result = ok("export", run_dir, "--out", tmp_path / "out", "--format", "torch", "--format", "onnx")
    assert "generator.onnx             ONNX; onnxruntime.InferenceSession(PATH)" in result.output
    config = json.loads((tmp_path / "out" / CONFIG).read_text())
    assert config["files"]["onnx"] == ONNX and config["files"]["torch.export"] == PROGRAM and config["skipped"] == {}
    assert config["onnx_opset"] >= 18
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / ONNX), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        ("z", ["batch", 8], "tensor(float)"),
        ("labels", ["batch"], "tensor(int64)"),
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("x", ["batch", 1, 16, 16])]
    run = load(run_dir)
    for n in (1, 7):  # the file was made at batch size 2
        z, labels = inputs(run, n, seed=n)
        (x,) = session.run(["x"], {"z": z.numpy(), "labels": labels.numpy()})
        torch.testing.assert_close(torch.from_numpy(x), run.generate(n, z, labels, ema=True), **ONNX_TOLERANCE)


def test_a_generator_that_cannot_be_exported_to_onnx_is_one_error_line(
    fixed_batch: tuple[Path, Plugins], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, plugins = fixed_batch
    monkeypatch.setattr("ganforge_core.plugins.get_plugins", lambda: plugins)
    result = ganforge("export", run_dir, "--out", tmp_path / "out", "--format", "onnx")
    one_error_line(result, "generator 'fixed-batch' cannot be exported as onnx: torch.export.export")
    assert "specialized it to be a constant (2)" in result.output, result.output
    assert not (tmp_path / "out").exists(), "a refused export writes nothing"
    one_error_line(ganforge("export", run_dir, "--out", tmp_path / "out", "--format", "tf"), "--format 'tf' is not")
    with pytest.raises(ConfigError, match="cannot be exported as torch.export"):
        export_generator(load_trained(run_dir, plugins, "cpu"), tmp_path / "out", formats=["torch"])


def test_onnx_without_its_packages_is_one_error_line(
    run_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    result = ganforge("export", run_dirs["mlp-ema"], "--out", tmp_path / "out", "--format", "onnx")
    one_error_line(result, "--format onnx needs onnxscript, which is not installed: pip install 'ganforge[onnx]'")
    assert not (tmp_path / "out").exists()


# -- docs/using-a-model.md -----------------------------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "using-a-model.md"


def guide_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", GUIDE.read_text(), re.MULTILINE | re.DOTALL)


def test_every_command_and_code_block_of_the_guide_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fields = {**RUNS["dcgan-cond-sn-ema"], "steps": 3, "batch_size": 8, "device": "cpu", "sample_every": 0}
    train(RunConfig(**fields, out=Path("runs/first")), quiet=True)
    commands = [line.strip() for block in guide_blocks("sh") for line in block.splitlines() if line.strip()]
    assert len(commands) == 6
    for line in commands:
        words = shlex.split(line)
        assert words[0] == ".venv/bin/ganforge", line
        ok(*words[1:])
    with Image.open("grid.png") as grid:
        assert grid.size == (8 * 18 + 2, 8 * 18 + 2)
    assert torch.load("samples.pt").shape == (1000, 1, 16, 16)
    assert np.load("walk.npy").shape == (4, 10, 1, 16, 16)
    assert json.loads(Path("runs/first/export/config.json").read_text())["skipped"] == {}
    onnx_files = json.loads(Path("runs/first/onnx/config.json").read_text())["files"]
    assert onnx_files["onnx"] == ONNX and onnx_files["torch.export"] is None and onnx_files["torchscript"] is None

    with_ganforge, with_hub, plain, onnx = guide_blocks("python")
    for block in (with_ganforge, with_hub):
        exec(compile(block, str(GUIDE), "exec"), {"__name__": "__main__"})  # noqa: S102 - the guide's own code
    onnx += "\nassert x.shape == (16, 1, 16, 16), x.shape\nassert 'torch' not in sys.modules, 'onnxruntime alone'\n"
    for block in (plain, onnx):
        done = subprocess.run(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                f"import sys; sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
                "import importlib.util\nassert importlib.util.find_spec('ganforge_core') is None\n" + block,
            ],
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    with Image.open(tmp_path / "exported.png") as picture:
        assert picture.size == (4 * 18 + 2, 4 * 18 + 2)
