"""The ``ganforge`` command line, run as a real subprocess where the process matters.

Happy paths check the run directory a user gets; bad inputs check that every
user mistake is one ``error:`` line on stderr, exit status 2, no traceback; a
hypothesis test throws random argument lists at ``ganforge run`` in-process.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ganforge_core import RunConfig, get_registry, resolve
from ganforge_core import checkpoint as ckpt
from ganforge_core.cli import app
from ganforge_core.errors import LINE_LIMIT

GANFORGE = Path(sys.executable).parent / "ganforge"
REGISTRY = get_registry()
TINY = ["--gen", "mlp:hidden=8,depth=1", "--disc", "mlp:hidden=8,depth=1", "--data", "ring-8:n=256"]
TINY_IMAGES = ["--gen", "dcgan:width=4,z_dim=8", "--disc", "dcgan:width=4", "--data", "mnist-5k:size=16"]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GANFORGE_PLUGINS"}
    env.update(COLUMNS="250", NO_COLOR="1", PYTHONWARNINGS="default")
    return env


# A guard against a hung command, not a speed limit: a whole run with its end-of-run metrics
# takes ~20 s on 2 idle cores and ten times that when the cores are shared many ways.
RUN_TIMEOUT = 900


def ganforge(*args: str | Path, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GANFORGE), *map(str, args)],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]


def assert_one_error_line(result: subprocess.CompletedProcess[str], *mentions: str) -> str:
    assert_no_traceback(result)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in mentions:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert "done:" not in result.stdout
    return lines[0]


def test_console_script_is_installed() -> None:
    assert GANFORGE.exists() or shutil.which("ganforge"), GANFORGE


# -- happy paths -------------------------------------------------------------------


@dataclass
class Finished:
    result: subprocess.CompletedProcess[str]
    out: Path

    def config(self) -> RunConfig:
        return RunConfig.model_validate_json((self.out / "config.json").read_text())

    def records(self) -> list[dict]:
        return [json.loads(line) for line in (self.out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    root = tmp_path_factory.mktemp("mlp-run")
    result = ganforge(
        "run", "--gen", "mlp", "--data", "ring-8:n=512", "--steps", "20", "--out", "run", "--log-every", "5",
        cwd=root, timeout=RUN_TIMEOUT,
    )
    return Finished(result, root / "run")


@pytest.fixture(scope="module")
def wgan_run(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    root = tmp_path_factory.mktemp("wgan-run")
    result = ganforge(
        "run", *TINY_IMAGES, "--loss", "wgan-gp", "--steps", "2", "--batch-size", "8", "--log-every", "1",
        "--out", "run", cwd=root, timeout=RUN_TIMEOUT,
    )
    return Finished(result, root / "run")


def test_run_succeeds_and_says_where(mlp_run: Finished) -> None:
    assert_no_traceback(mlp_run.result)
    assert mlp_run.result.returncode == 0, mlp_run.result.stderr[-3000:]
    assert "done: 20 steps" in mlp_run.result.stdout
    assert not [line for line in mlp_run.result.stderr.splitlines() if line.startswith("error")]


def test_run_writes_a_fully_resolved_config(mlp_run: Finished) -> None:
    config = mlp_run.config()
    for chosen, kind in (
        (config.generator, "generator"),
        (config.discriminator, "discriminator"),
        (config.loss, "loss"),
        (config.scheduler, "scheduler"),
        (config.dataset, "dataset"),
    ):
        assert chosen is not None, kind
        fields = REGISTRY.get(kind, chosen.name).options.model_fields
        assert set(chosen.options) == set(fields), (kind, chosen.options)
    assert config.discriminator.name == "mlp"
    assert config.dataset.options["n"] == 512
    assert config.scheduler.options["d_steps"] == 1
    assert config.steps == 20 and config.log_every == 5
    assert config.lr_g is not None and config.lr_d is not None and config.betas is not None
    assert config.metrics is not None and [m.name for m in config.metrics] == ["mixture-modes"]
    assert config.out is not None and Path(config.out).name == "run"


def test_saved_config_resolves_to_itself(mlp_run: Finished) -> None:
    config = mlp_run.config()
    assert resolve(config, REGISTRY).config == config


def test_run_logs_losses_every_log_every_steps(mlp_run: Finished) -> None:
    records = mlp_run.records()
    training = [r for r in records if "loss/d" in r]
    assert [r["step"] for r in training] == [5, 10, 15, 20]
    for record in training:
        for key in ("loss/d", "loss/g"):
            assert isinstance(record[key], float) and math.isfinite(record[key]), record
    evaluations = [r for r in records if r.get("event") == "eval"]
    assert len(evaluations) == 1 and "mixture-modes/modes" in evaluations[0]
    assert json.loads((mlp_run.out / "results.json").read_text()).keys() <= evaluations[0].keys()


def test_run_writes_samples_and_a_loadable_checkpoint(mlp_run: Finished) -> None:
    assert (mlp_run.out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoints = ckpt.list_checkpoints(mlp_run.out)
    assert checkpoints and checkpoints[-1].name == "checkpoint-00000020.pt"
    state = ckpt.load_safe(checkpoints[-1])
    assert state["step"] == 20
    assert RunConfig.model_validate_json(state["config"]).generator.name == "mlp"


def test_wgan_gp_run_takes_the_loss_recommendations(wgan_run: Finished) -> None:
    assert_no_traceback(wgan_run.result)
    assert wgan_run.result.returncode == 0, wgan_run.result.stderr[-3000:]
    config = wgan_run.config()
    assert config.scheduler.options["d_steps"] == 5
    assert config.lr_g == 1e-4 and config.lr_d == 1e-4
    assert tuple(config.betas) == (0.0, 0.9)
    assert json.loads((wgan_run.out / "config.json").read_text())["betas"] == [0.0, 0.9]
    assert config.discriminator.name == "dcgan" and config.discriminator.options["norm"] == "layer"
    # mnist-5k is digits: the MNIST-classifier metrics are the defaults, and they ran at the end.
    assert {m.name for m in config.metrics} == {
        "digit-classes", "classifier-fid", "classifier-kid", "precision-recall", "class-spread"
    }
    assert {"digit-classes/classes", "classifier-fid/fid", "classifier-fid/real-floor"} <= set(
        json.loads((wgan_run.out / "results.json").read_text())
    )
    assert resolve(config, REGISTRY).config == config


def test_wgan_gp_run_logs_its_gradient_penalty(wgan_run: Finished) -> None:
    training = [r for r in wgan_run.records() if "loss/d" in r]
    assert [r["step"] for r in training] == [1, 2]
    assert all(math.isfinite(r["loss/gp"]) and r["loss/gp"] >= 0 for r in training)
    assert (wgan_run.out / "samples.png").exists()
    assert ckpt.list_checkpoints(wgan_run.out)[-1].name == "checkpoint-00000002.pt"


def test_explicit_flags_beat_the_loss_recommendations(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["run", *TINY, "--loss", "wgan-gp", "--lr-g", "0.001", "--betas", "0.5,0.99",
         "--sched", "constant:d_steps=2", "--steps", "1", "--out", str(tmp_path / "run"), "-q"],
    )
    assert result.exit_code == 0, result.output
    config = RunConfig.model_validate_json((tmp_path / "run" / "config.json").read_text())
    assert config.lr_g == 0.001 and config.lr_d == 1e-4
    assert tuple(config.betas) == (0.5, 0.99)
    assert config.scheduler.options["d_steps"] == 2


def test_config_file_is_read_and_flags_override_it(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(
        'generator = "mlp:hidden=8,depth=1"\ndiscriminator = "mlp:hidden=8,depth=1"\n'
        'dataset = "ring-8:n=256"\nsteps = 50\nseed = 7\n'
    )
    result = CliRunner().invoke(
        app, ["run", "--config", str(settings_file), "--steps", "2", "--out", str(tmp_path / "run"), "-q"]
    )
    assert result.exit_code == 0, result.output
    config = RunConfig.model_validate_json((tmp_path / "run" / "config.json").read_text())
    assert config.steps == 2 and config.seed == 7 and config.generator.options["hidden"] == 8


def test_resume_continues_where_the_run_stopped(tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["run", *TINY, "--steps", "4", "--log-every", "1", "--out", str(out), "-q"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["run", "--resume", str(out), "--steps", "6", "-q"])
    assert again.exit_code == 0, again.output
    steps = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss/d" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert ckpt.list_checkpoints(out)[-1].name == "checkpoint-00000006.pt"
    assert RunConfig.model_validate_json((out / "config.json").read_text()).steps == 6


def test_resume_skips_a_corrupt_newest_checkpoint_with_a_note(tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(
        app, ["run", *TINY, "--steps", "2", "--checkpoint-every", "1", "--log-every", "1", "--out", str(out), "-q"]
    )
    assert first.exit_code == 0, first.output
    newest = ckpt.list_checkpoints(out)[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    again = runner.invoke(app, ["run", "--resume", str(out), "--steps", "3"])
    assert again.exit_code == 0, again.output
    # The user is told which checkpoint was passed over (wording is ganforge's to choose).
    assert [line for line in again.stderr.splitlines() if newest.name in line], again.stderr
    steps = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss/d" in r]
    assert steps == [1, 2, 3], "not resumed from checkpoint 1, or the log kept the abandoned step 2"
    assert ckpt.load_safe(ckpt.checkpoint_path(out, 3))["step"] == 3


# -- the catalogue and help ----------------------------------------------------------


def registered() -> list[tuple[str, str]]:
    return sorted((c.kind, c.name) for c in REGISTRY.all())


def test_plugins_json_lists_every_component_with_described_options(tmp_path: Path) -> None:
    result = ganforge("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    components = [c for plugin in data["plugins"] for c in plugin["components"]]
    assert sorted((c["kind"], c["name"]) for c in components) == registered()
    assert data["problems"] == []
    for component in components:
        expected = REGISTRY.get(component["kind"], component["name"]).options.model_fields
        assert [o["name"] for o in component["options"]] == list(expected)
        assert all(o["description"].strip() for o in component["options"]), component["name"]
        assert component["summary"].strip()


def test_plugins_table_names_every_component(tmp_path: Path) -> None:
    result = ganforge("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for _, name in registered():
        assert name in result.stdout, name


HELP_COMMANDS = [["--help"], ["run", "--help"], ["plugins", "--help"]]
PROBE = """
import sys
sys.argv = ["ganforge", *{args!r}]
from ganforge_core.cli import main
try:
    main()
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {{"torch", "torchvision", "numpy"}})
print("HEAVY", heavy[:5])
"""


@pytest.mark.parametrize("args", HELP_COMMANDS, ids=lambda a: " ".join(a))
def test_help_does_not_import_torch(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert "HEAVY []" in result.stdout, result.stdout[-500:]


def test_help_import_profile_has_no_torch(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ganforge_core", "--help"],
        cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "ganforge_core.cli" in imported
    assert [m for m in imported if m.split(".")[0] == "torch"] == []


def builtin_entry_points() -> dict[str, str]:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    return project["project"]["entry-points"]["ganforge"]


@pytest.mark.parametrize(("name", "module"), sorted(builtin_entry_points().items()))
def test_builtin_plugin_imports_without_torch_or_numpy(name: str, module: str, tmp_path: Path) -> None:
    """The CLI imports every plugin to find its commands, even for --help: networks and maths load later."""
    probe = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision', 'numpy'})[:5])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environment(), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"importing plugin '{name}' ({module}) imported {result.stdout.strip()}"


# -- bad inputs: one line, exit 2, no traceback ---------------------------------------


@dataclass(frozen=True)
class BadInput:
    id: str
    args: tuple[str, ...]
    mentions: tuple[str, ...] = ()
    prepare: Callable[[Path], None] | None = None
    skip: str = ""
    bounded: bool = True  # append BOUNDED (cases about --steps itself must not)
    absent: tuple[str, ...] = ()  # words the line must not say (it would blame the wrong thing)
    command: str = "run"

    def argv(self) -> list[str]:
        return [self.command, *self.args, *(BOUNDED if self.bounded and self.command == "run" else ())]


def _non_empty(root: Path) -> None:
    (root / "full").mkdir()
    (root / "full" / "notes.txt").write_text("mine\n")


def _write(name: str, content: bytes) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        (root / name).write_bytes(content)

    return prepare


def _checkpoint_dir(content: Callable[[], bytes]) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        (root / "old").mkdir()
        (root / "old" / "checkpoint-00000002.pt").write_bytes(content())

    return prepare


def _nested(name: str, opening: str, closing: str, levels: int, key: str = "") -> Callable[[Path], None]:
    return _write(name, (key + opening * levels + "1" + closing * levels + "\n").encode())


def _empty_dir(root: Path) -> None:
    (root / "old").mkdir()
    (root / "old" / "config.json").write_text("{}\n")


_REAL_CHECKPOINT: list[bytes] = []


def real_checkpoint() -> bytes:
    """A genuine checkpoint of a tiny run (made once, in-process)."""
    if not _REAL_CHECKPOINT:
        with tempfile.TemporaryDirectory() as scratch:
            result = CliRunner().invoke(app, ["run", *TINY, "--steps", "2", "--out", f"{scratch}/run", "-q"])
            assert result.exit_code == 0, result.output
            _REAL_CHECKPOINT.append(ckpt.checkpoint_path(Path(scratch) / "run", 2).read_bytes())
    return _REAL_CHECKPOINT[0]


def _save(state: dict) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "state.pt"
        torch.save(state, path)
        return path.read_bytes()


def _without(key: str) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "state.pt"
        path.write_bytes(real_checkpoint())
        state = torch.load(path, weights_only=True)
        del state[key]
        return _save(state)


NO_CUDA = "" if not torch.cuda.is_available() else "CUDA is available here"
NO_MPS = "" if not torch.backends.mps.is_available() else "MPS is available here"
GENERATORS = tuple(REGISTRY.names("generator"))

BAD_INPUTS = [
    BadInput("unknown-generator", ("--gen", "mpl", *TINY[2:]), ("'mpl'", "did you mean 'mlp'", *GENERATORS)),
    BadInput("unknown-discriminator", (*TINY[:2], "--disc", "mlpp", *TINY[4:]), ("'mlpp'", "did you mean 'mlp'")),
    BadInput("unknown-loss", (*TINY, "--loss", "wgan-pg"), ("'wgan-pg'", "did you mean 'wgan-gp'",
                                                            *REGISTRY.names("loss"))),
    BadInput("unknown-dataset", (*TINY[:4], "--data", "ring8"), ("'ring8'", "did you mean 'ring-8'")),
    BadInput("unknown-option-key", ("--gen", "dcgan:widht=3", "--data", "mnist-5k"),
             ("unknown option 'widht'", "did you mean 'width'", "width", "z_dim")),
    BadInput("bad-option-value", ("--gen", "mlp:hidden=abc", *TINY[2:]), ("hidden", "'abc'")),
    BadInput("bad-literal-option", (*TINY_IMAGES[:2], "--disc", "dcgan:norm=bogus", *TINY_IMAGES[4:]),
             ("norm", "'bogus'", "'batch'", "'layer'")),
    BadInput("option-not-key-value", ("--gen", "mlp:hidden", *TINY[2:]), ("--gen", "key=value")),
    BadInput("label-smoothing-with-wgan-gp", (*TINY, "--reg", "label-smoothing", "--loss", "wgan-gp"),
             ("label-smoothing", "wgan-gp")),
    BadInput("batchnorm-critic-with-wgan-gp",
             (*TINY_IMAGES[:2], "--disc", "dcgan:norm=batch", "--loss", "wgan-gp", *TINY_IMAGES[4:]),
             ("wgan-gp", "dcgan", "norm=layer")),
    BadInput("image-generator-on-vector-data", ("--gen", "dcgan", "--data", "ring-8"), ("dcgan", "image", "ring-8")),
    BadInput("metric-that-needs-other-data", (*TINY_IMAGES, "--metric", "mixture-modes"),
             ("mixture-modes", "gaussian-mixture", "mnist-5k")),
    BadInput("regularizer-twice", (*TINY, "--reg", "instance-noise", "--reg", "instance-noise"), ("instance-noise",)),
    BadInput("batch-larger-than-dataset", (*TINY, "--batch-size", "300"), ("--batch-size", "300", "256")),
    BadInput("cuda-without-cuda", (*TINY, "--device", "cuda"), ("cuda",), skip=NO_CUDA),
    BadInput("mps-without-mps", (*TINY, "--device", "mps"), ("mps",), skip=NO_MPS),
    BadInput("unknown-device", (*TINY, "--device", "tpu"), ("--device", "cuda")),
    BadInput("infinite-learning-rate", (*TINY, "--lr-d", "inf"), ("--lr-d",)),
    BadInput("bad-betas", (*TINY, "--betas", "0.5,1.5"), ("--betas",)),
    BadInput("zero-steps", (*TINY, "--steps", "0"), ("--steps",), bounded=False),
    BadInput("non-empty-out", (*TINY, "--out", "full"), ("full", "not empty"), prepare=_non_empty),
    BadInput("out-is-a-file", (*TINY, "--out", "taken.txt"), ("taken.txt",), prepare=_write("taken.txt", b"x\n")),
    BadInput("seed-too-large-for-torch", (*TINY, "--seed", str(2**64 - 2)), ("--seed",)),
    BadInput("config-missing", ("--config", "missing.json"), ("missing.json",)),
    BadInput("config-invalid-json", ("--config", "bad.json"), ("bad.json", "JSON"),
             prepare=_write("bad.json", b'{"steps": ')),
    BadInput("config-invalid-toml", ("--config", "bad.toml"), ("bad.toml", "TOML"),
             prepare=_write("bad.toml", b"steps = [\n")),
    BadInput("config-not-a-table", ("--config", "list.json"), ("list.json",), prepare=_write("list.json", b"[1, 2]\n")),
    BadInput("config-unknown-setting", ("--config", "typo.json"), ("stpes",),
             prepare=_write("typo.json", b'{"stpes": 3}\n')),
    BadInput("config-not-utf8", ("--config", "binary.json"), ("binary.json",),
             prepare=_write("binary.json", b"\xba\xff\xfe\x00{}")),
    BadInput("config-is-a-directory", ("--config", "."), ("config file",)),
    BadInput("resume-missing-directory", ("--resume", "nowhere"), ("nowhere",)),
    BadInput("resume-without-checkpoints", ("--resume", "old"), ("no loadable checkpoint", "old"), prepare=_empty_dir),
    BadInput("resume-empty-checkpoint", ("--resume", "old"), ("old",),
             prepare=_checkpoint_dir(lambda: b"")),
    BadInput("resume-truncated-checkpoint", ("--resume", "old"), ("old",),
             prepare=_checkpoint_dir(lambda: real_checkpoint()[:3000])),
    BadInput("resume-garbage-checkpoint", ("--resume", "old"), ("old",),
             prepare=_checkpoint_dir(lambda: bytes(range(256)) * 20)),
    BadInput("resume-text-checkpoint", ("--resume", "old"), ("old",),
             prepare=_checkpoint_dir(lambda: b"hello\n")),
    BadInput("resume-checkpoint-without-fields", ("--resume", "old"), ("old",),
             prepare=_checkpoint_dir(lambda: _save({"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION}))),
    BadInput("resume-checkpoint-without-rng", ("--resume", "old"), ("old",),
             prepare=_checkpoint_dir(lambda: _without("rng"))),
    BadInput("resume-with-other-components", ("--resume", "old", "--gen", "dcgan"), ("--gen",),
             prepare=_checkpoint_dir(real_checkpoint)),
    # Non-finite and duplicated options, and true for a number (issue 19).
    BadInput("r1-gamma-inf", (*TINY, "--reg", "r1:gamma=inf"), ("regularizer 'r1'", "'gamma'", "finite")),
    BadInput("wgan-gp-weight-inf", (*TINY, "--loss", "wgan-gp:weight=inf"), ("loss 'wgan-gp'", "'weight'", "finite")),
    BadInput("lsgan-g-target-nan", (*TINY, "--loss", "lsgan:g_target=nan"), ("loss 'lsgan'", "'g_target'", "finite")),
    BadInput("wgan-clip-inf", (*TINY, "--loss", "wgan:clip=inf"), ("loss 'wgan'", "'clip'", "finite")),
    BadInput("option-given-twice", (*TINY, "--reg", "r1:gamma=1,gamma=2"), ("--reg", "'gamma'", "given twice")),
    BadInput("config-json-infinity", ("--config", "inf.json"), ("inf.json", "Infinity"),
             prepare=_write("inf.json", b'{"lr_d": Infinity}\n')),
    BadInput("config-json-overflowing-option", ("--config", "big.json"), ("regularizer 'r1'", "'gamma'", "finite"),
             prepare=_write("big.json", b'{"dataset": "ring-8:n=256", "generator": "mlp", '
                                        b'"regularizers": [{"name": "r1", "options": {"gamma": 1e999}}]}\n')),
    BadInput("config-seed-true", ("--config", "seed.toml"), ("--seed", "not true or false"),
             prepare=_write("seed.toml", b'dataset = "ring-8:n=256"\ngenerator = "mlp"\nseed = true\n')),
    BadInput("config-option-true", ("--config", "opt.toml"), ("generator 'mlp'", "'hidden'", "not true or false"),
             prepare=_write("opt.toml", b'dataset = "ring-8:n=256"\n'
                                        b'generator = {name = "mlp", options = {hidden = true}}\n')),
    # Sizes no machine has: refused before anything is allocated.
    BadInput("dataset-too-large", ("--gen", "mlp", "--data", "ring-8:n=100000000000"),
             ("dataset 'ring-8'", "'n'", "10000000")),
    BadInput("hidden-too-large", ("--gen", "mlp:hidden=99999999999", "--data", "ring-8:n=256"),
             ("generator 'mlp'", "'hidden'", "8192")),
    BadInput("data-seed-past-64-bits", ("--gen", "mlp", "--data", f"ring-8:n=256,data_seed={2**70}"),
             ("dataset 'ring-8'", "'data_seed'")),
    BadInput("log-every-past-64-bits", (*TINY, "--log-every", str(2**70)), ("--log-every", "64-bit")),
    # Hostile config files.
    BadInput("config-nested-json", ("--config", "deep.json"), ("deep.json", "nested"),
             prepare=_nested("deep.json", '{"a": ', "}", 100_000)),
    BadInput("config-nested-toml", ("--config", "deep.toml"), ("deep.toml", "nested"),
             prepare=_nested("deep.toml", "[", "]", 100_000, key="a = ")),
    BadInput("config-nested-but-parsable", ("--config", "mid.json"), ("mid.json", "nested"),
             prepare=_nested("mid.json", '{"steps": ', "}", 40)),
    BadInput("config-huge-string", ("--config", "huge.json"), ("--device", "characters)"),
             prepare=_write("huge.json", b'{"device": "' + b"x" * 5_000_000 + b'"}\n')),
    BadInput("config-huge-key", ("--config", "key.json"), ("unknown setting", "characters)"),
             prepare=_write("key.json", b'{"' + b"k" * 5_000_000 + b'": 1}\n')),
    BadInput("huge-option-value", ("--gen", "mlp:hidden=" + "9" * 1_000_000, "--data", "ring-8:n=256"),
             ("'hidden'", "characters)")),
    # Errors that blame the wrong thing: a bad flag on --resume is the flag's fault, not the checkpoint's.
    BadInput("resume-with-zero-steps", ("--resume", "old", "--steps", "0"), ("--steps", "greater than"),
             prepare=_checkpoint_dir(real_checkpoint), bounded=False, absent=("no valid run configuration",)),
    BadInput("resume-with-unknown-device", ("--resume", "old", "--device", "gpu"), ("--device", "'gpu'"),
             prepare=_checkpoint_dir(real_checkpoint), absent=("no valid run configuration",)),
    # sample: the same seed range as run, and no more samples than memory holds.
    BadInput("sample-negative-seed", ("old/checkpoint-00000002.pt", "--seed", "-1"), ("--seed", "2**32", "-1"),
             prepare=_checkpoint_dir(real_checkpoint), command="sample"),
    BadInput("sample-seed-past-64-bits", ("old/checkpoint-00000002.pt", "--seed", str(2**70)), ("--seed", "2**32"),
             prepare=_checkpoint_dir(real_checkpoint), command="sample"),
    BadInput("sample-too-many", ("old/checkpoint-00000002.pt", "--n", "10000000000000"),
             ("--n 10000000000000", "268,435,456", "GiB"), prepare=_checkpoint_dir(real_checkpoint), command="sample"),
    BadInput("sample-interpolate-too-many", ("old/checkpoint-00000002.pt", "--interpolate", "10000000000"),
             ("--interpolate 10000000000", "268,435,456", "GiB"), prepare=_checkpoint_dir(real_checkpoint),
             command="sample"),
]


# Appended to every bad input, so a case that wrongly trains stops after three steps (resumable checkpoints hold two).
BOUNDED = ("--steps", "3", "-q")


def invoke(args: list[str]):
    """``ganforge`` in-process: the same code path as the console script, minus the start-up."""
    return CliRunner().invoke(app, args)


def assert_one_error_line_in_process(result, *mentions: str) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output[-3000:]
    assert result.exit_code == 2, (result.exit_code, result.output[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in mentions:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert "done:" not in result.stdout
    return lines[0]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BAD_INPUTS])
def test_bad_input_is_one_error_line_with_status_2(
    case: BadInput, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.skip:
        pytest.skip(case.skip)
    if case.prepare:
        case.prepare(tmp_path)
    monkeypatch.chdir(tmp_path)
    line = assert_one_error_line_in_process(invoke(case.argv()), *case.mentions)
    for text in case.absent:
        assert text not in line, line
    # However much of the input it quotes, an error line stays readable.
    assert len(line) <= len("error: ") + LINE_LIMIT + len("... (50,000,000 characters)"), len(line)


# The same through the installed console script: a real process, its real stderr
# (no warnings printed at import) and its real exit status.
IN_A_REAL_PROCESS = ["unknown-generator", "batchnorm-critic-with-wgan-gp", "resume-truncated-checkpoint",
                     "cuda-without-cuda"]


@pytest.fixture(scope="module")
def real_process_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Two at a time: each process imports torch, which dominates the time."""
    cases = [c for c in BAD_INPUTS if c.id in IN_A_REAL_PROCESS and not c.skip]
    roots = {}
    for case in cases:
        roots[case.id] = tmp_path_factory.mktemp(case.id)
        if case.prepare:
            case.prepare(roots[case.id])
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.id: pool.submit(ganforge, *c.argv(), cwd=roots[c.id]) for c in cases}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BAD_INPUTS if c.id in IN_A_REAL_PROCESS])
def test_bad_input_in_a_real_process(case: BadInput, real_process_results) -> None:
    if case.skip:
        pytest.skip(case.skip)
    assert_one_error_line(real_process_results[case.id], *case.mentions)


@pytest.mark.parametrize(
    "args",
    [["run", "--bogus"], ["run", "--steps", "abc"], ["run", "--gen"], ["run", "extra-argument"], ["no-such-command"]],
    ids=lambda a: " ".join(a),
)
def test_usage_errors_are_one_line_in_a_real_process(args: list[str], tmp_path: Path) -> None:
    # Usage errors are found before any command runs (no torch import), so these are cheap.
    assert_one_error_line(ganforge(*args, cwd=tmp_path))


def test_batch_size_of_one_trains_or_is_refused_in_one_line(tmp_path: Path) -> None:
    # The default mlp generator uses BatchNorm; a batch of one must not end in a traceback.
    result = invoke(["run", "--gen", "mlp", "--data", "ring-8:n=256", "--batch-size", "1", "--steps", "1",
                     "--out", str(tmp_path / "run"), "-q"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), result.output[-2000:]
    if result.exit_code == 2:
        assert_one_error_line_in_process(result, "--batch-size")


# -- random argument lists -----------------------------------------------------------

COMPONENT_FLAGS = ["--gen", "--disc", "--loss", "--reg", "--sched", "--data", "--metric"]
NUMBER_FLAGS = ["--batch-size", "--lr-g", "--lr-d", "--seed", "--log-every", "--sample-every",
                "--checkpoint-every", "--keep-checkpoints"]
GARBAGE = ["", "0", "1", "2", "-1", "3", "0.5", "1e-3", "abc", "inf", "nan", "-inf", "1e400", "300",
           str(2**63), str(2**64), "true", "none", "=", ",", ":", "a=b", "[]", "{}", "é", "\x7f"]
OPTION_KEYS = sorted({k for c in REGISTRY.all() for k in c.options.model_fields} | {"widht", "x", ""})
# Registry names of every kind (so kinds get mixed up), minus MNIST, which takes a second to load.
NAMES = sorted({c.name for c in REGISTRY.all()} - {"mnist-5k"} | {"mpl", "Bad_Name", "ring-8:n=100"})


def component_values() -> st.SearchStrategy[str]:
    pair = st.tuples(st.sampled_from(OPTION_KEYS), st.sampled_from(GARBAGE)).map(lambda kv: f"{kv[0]}={kv[1]}")
    with_options = st.tuples(st.sampled_from(NAMES), st.lists(pair, max_size=3)).map(
        lambda t: f"{t[0]}:{','.join(t[1])}"
    )
    return st.one_of(st.sampled_from(NAMES), with_options, st.text(max_size=12))


def flag_pairs() -> st.SearchStrategy[list[str]]:
    return st.one_of(
        st.tuples(st.sampled_from(COMPONENT_FLAGS), component_values()).map(list),
        st.tuples(st.sampled_from(NUMBER_FLAGS), st.one_of(st.sampled_from(GARBAGE), st.integers(-3, 400).map(str)))
        .map(list),
        st.tuples(st.just("--betas"), st.sampled_from(["0.5,0.9", "0,0.9", "1,1", "a,b", "0.5", ",", "0.1,0.2,0.3",
                                                        "-0.1,0.5", "nan,0.5"])).map(list),
        st.tuples(st.just("--device"), st.sampled_from(["cpu", "auto", "cuda", "cuda:0", "cuda:x", "mps", "tpu", ""]))
        .map(list),
        st.sampled_from([["--bogus"], ["extra-argument"], ["--quiet"], ["--gen"], ["--resume", "no-such-run"],
                         ["--config", "no-such-file.json"]]),
    )


def assert_clean_exit(result, args: list[str]) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args, repr(result.exception), result.output[-2000:]
    )
    assert "Traceback" not in result.output, (args, result.output[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    # Exit 3 is TrainingDiverged by design: a finite but huge learning rate may diverge in one step.
    diverged = result.exit_code == 3 and len(errors) == 1 and "NaN or infinite" in errors[0]
    assert result.exit_code in (0, 2) or diverged, (args, result.exit_code, result.output[-2000:])
    if errors:  # ganforge's own errors are exactly one line (click's usage errors are boxed)
        assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), (args, result.stderr)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(extra=st.lists(flag_pairs(), max_size=4).map(lambda pairs: [a for p in pairs for a in p]))
@example(extra=["--batch-size", "1", "--gen", "mlp:depth=1"])
@example(extra=["--seed", str(2**64 - 2)])
@example(extra=["--device", "mps"])
@example(extra=["--gen", "0\r0"])  # found by this test: a name with a carriage return
@example(extra=["--data", "ring\u20288", "--metric", "x\ny"])
def test_random_arguments_never_end_in_a_traceback(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        args = ["run", *TINY, "-q", *extra, "--steps", "1", "--out", f"{scratch}/run"]
        result = CliRunner().invoke(app, args)
        assert_clean_exit(result, args)
