"""Tampered checkpoints, a full disk for real, exports as sources, an edited config.toml.

* A field of the right container with the wrong contents (an RNG state of the wrong
  size or dtype, an empty RNG dict, ``step`` as a string) is one line naming the file
  and the field on ``sample``, ``eval``, ``export`` and ``run --resume`` (exit 2).
* A newest checkpoint that loads but does not fit falls back to the newest good older
  one, with one warning line naming both files.
* A full tmpfs (root only) during a checkpoint write and during ``export``: one line
  "No space left on device" naming the file, exit 1, the previous checkpoint intact and
  no half-written file.
* ``sample`` and ``eval`` read an ``export`` directory.
* ``run --resume`` refuses a run directory whose ``config.toml`` was edited.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from ganforge_core import checkpoint as ckpt
from ganforge_core.session import train
from test_reliability import assert_identical, assert_one_error_line, run_cli, tiny_config

COMMANDS = ("sample", "eval", "export", "resume")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("tampered") / "run"
    train(tiny_config(out, steps=4, checkpoint_every=2), quiet=True)
    return out


def command_line(command: str, source: Path, tmp_path: Path) -> list[str | Path]:
    return {
        "sample": ["sample", source, "--n", "5", "--device", "cpu", "--out", tmp_path / "s.pt"],
        "eval": ["eval", source, "--device", "cpu"],
        "export": ["export", source, "--out", tmp_path / "export"],
        "resume": ["run", "--resume", source, "--steps", "6"],  # not -q, which hides warnings
    }[command]


def stderr_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def tamper(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def setter(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        target = state
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


# (id, change, the field named, the start of the problem): each fails load_safe's field check.
MALFORMED = [
    ("rng-torch-size", setter("rng", "torch", value=torch.zeros(10, dtype=torch.uint8)), "rng.torch",
     "not a CPU generator state (Expected a CPUGeneratorImplState of size 5056 but found the input RNG state size to be 10)"),
    ("rng-torch-dtype", setter("rng", "torch", value=torch.zeros(5056)), "rng.torch",
     "a float32 tensor of shape [5056] is not a generator state (a 1-D uint8 tensor)"),
    ("rng-torch-zeros", setter("rng", "torch", value=torch.zeros(5056, dtype=torch.uint8)), "rng.torch",
     "not a CPU generator state (Invalid mt19937 state)"),
    ("rng-empty", setter("rng", value={}), "rng", "it lacks the python, numpy, torch, cuda random states"),
    ("rng-python-size", setter("rng", "python", value=(3, tuple(range(10)), None)), "rng.python",
     "tuple (3, (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), None) is no state of Python's random (state vector is the wrong size)"),
    ("rng-numpy-size", lambda s: s["rng"]["numpy"].__setitem__(1, torch.zeros(10, dtype=torch.int64)), "rng.numpy",
     "list"),
    ("rng-cuda", setter("rng", "cuda", value="x"), "rng.cuda", "str 'x' is not a list of CUDA generator states"),
    ("step-string", setter("step", value="4"), "step", "str '4' is not a count (an int of at least 0)"),
    ("step-negative", setter("step", value=-1), "step", "int -1 is not a count (an int of at least 0)"),
    ("config-not-json", setter("config", value="{not json"), "config",
     "not a valid run configuration (it is not JSON)"),
    ("config-invalid", lambda s: s.__setitem__("config", json.dumps({**json.loads(s["config"]), "steps": "many"})),
     "config", "not a valid run configuration (steps: Input should be a valid integer"),
    ("generator-not-tensors", setter("generator", "net.0.weight", value=[1.0]), "generator.net.0.weight",
     "list [1.0] is not a tensor of a state_dict"),
    ("betas-string", lambda s: s["opt_g"]["param_groups"][0].__setitem__("betas", "x"),
     "opt_g.param_groups.0.betas", "str 'x' is not an optimizer setting"),
    ("batches-generator", setter("batches", "generator", value=torch.zeros(3, dtype=torch.uint8)),
     "batches.generator", "not a CPU generator state"),
    ("batches-position", setter("batches", "position", value=1.5), "batches.position", "float 1.5 is not a count"),
    ("skipped-string", setter("skipped", "D", value="x"), "skipped.D", "str 'x' is not a count"),
    ("data-shape", setter("data", "shape", value=[]), "data.shape", "list [] is not a list of sizes of at least 1"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "field", "problem"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_field_is_one_line_naming_the_file_and_the_field_on_every_command(
    change: Callable[[dict[str, Any]], None],
    field: str,
    problem: str,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = ckpt.checkpoint_path(run_dir, 4)
    shutil.copy(ckpt.checkpoint_path(trained_run, 4), path)
    tamper(path, change)
    refusal = f"{path} has a malformed field '{field}': {problem}"
    for command in COMMANDS:
        source = run_dir if command == "resume" else path
        code, stderr = run_cli(monkeypatch, capsys, *command_line(command, source, tmp_path))
        assert code == 2, (command, stderr)
        line = assert_one_error_line(stderr)
        assert stderr_lines(stderr) == [line], (command, stderr)
        # A run directory whose only checkpoint is refused says so around the same refusal.
        expected = f"error: no loadable checkpoint in {run_dir} ({refusal}" if command == "resume" else f"error: {refusal}"
        assert line.startswith(expected), (command, line)
    assert not (tmp_path / "s.pt").exists() and not (tmp_path / "export").exists()


def wrong_shape(state: dict[str, Any]) -> None:
    state["generator"]["net.0.weight"] = torch.zeros(3, 2)


def missing_key(state: dict[str, Any]) -> None:
    del state["generator"]["net.3.bias"]


def extra_key(state: dict[str, Any]) -> None:
    state["generator"]["net.9.weight"] = torch.zeros(2)


def adam_moment_of_another_shape(state: dict[str, Any]) -> None:
    state["opt_d"]["state"][0]["exp_avg"] = torch.zeros(7)


def order_of_other_data(state: dict[str, Any]) -> None:
    state["batches"]["order"] = torch.arange(100)


# (change, the commands that read that part, the exact problem after "does not fit this run's networks")
MISFITS = {
    "wrong-shape": (wrong_shape, COMMANDS, ": Error(s) in loading state_dict for MLPGenerator: size mismatch for "
                    "net.0.weight: copying a param with shape torch.Size([3, 2]) from checkpoint, the shape in "
                    "current model is torch.Size([16, 2])."),
    "missing-key": (missing_key, COMMANDS, ": Error(s) in loading state_dict for MLPGenerator: Missing key(s) in "
                    'state_dict: "net.3.bias".'),
    "extra-key": (extra_key, COMMANDS, ": Error(s) in loading state_dict for MLPGenerator: Unexpected key(s) in "
                  'state_dict: "net.9.weight".'),
    "adam-moment": (adam_moment_of_another_shape, ("resume",),
                    ": opt_d: the state 'exp_avg' of parameter 0 has shape [7], the parameter [80, 2]"),
    "batch-order": (order_of_other_data, ("resume",), ": batches.order is not a permutation of the dataset's 512 samples"),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(MISFITS))
def test_a_newest_checkpoint_that_does_not_fit_falls_back_to_the_older_good_one(
    kind: str, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    change, commands, problem = MISFITS[kind]
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    newest, older = ckpt.checkpoint_path(run_dir, 4), ckpt.checkpoint_path(run_dir, 2)
    tamper(newest, change)
    # The one file alone is refused in one line: there is no older one to fall back to.
    if "sample" in commands:
        code, stderr = run_cli(monkeypatch, capsys, *command_line("sample", newest, tmp_path))
        assert code == 2 and stderr_lines(stderr) == [f"error: {newest} does not fit this run's networks{problem}"]
    passed = f"{newest} does not fit this run's networks{problem}; using the older {older} instead"
    for command in commands:
        code, stderr = run_cli(monkeypatch, capsys, *command_line(command, run_dir, tmp_path))
        assert code == 0, (command, stderr)
        if command == "resume":
            # resume sets the file aside, so the next resume does not meet it again
            warnings = [line for line in stderr_lines(stderr) if line.startswith("warning:")]
            assert warnings == [f"warning: {passed}; set aside as {newest.name}.unloadable"], stderr
            assert (run_dir / f"{newest.name}.unloadable").exists()
            assert ckpt.load_safe(newest)["step"] == 4 and ckpt.latest_loadable(run_dir)[1]["step"] == 6
        else:
            assert stderr_lines(stderr) == [f"warning: {passed}"], (command, stderr)


def test_the_fallback_samples_and_resumes_exactly_as_the_older_checkpoint(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    older = ckpt.checkpoint_path(run_dir, 2)
    assert run_cli(monkeypatch, capsys, "sample", older, "--n", "9", "--seed", "3", "--out", tmp_path / "want.pt")[0] == 0
    tamper(ckpt.checkpoint_path(run_dir, 4), setter("rng", value={}))
    code, stderr = run_cli(monkeypatch, capsys, "sample", run_dir, "--n", "9", "--seed", "3", "--out", tmp_path / "got.pt")
    assert code == 0 and len(stderr_lines(stderr)) == 1 and f"using the older {older} instead" in stderr
    assert torch.equal(torch.load(tmp_path / "got.pt"), torch.load(tmp_path / "want.pt"))

    # Resumed, it continues as the same run directory without the newest checkpoint does.
    reference_dir = tmp_path / "reference"
    shutil.copytree(trained_run, reference_dir)
    ckpt.checkpoint_path(reference_dir, 4).unlink()
    reference = train(None, resume=reference_dir, overrides={"steps": 6}, quiet=True)
    resumed = train(None, resume=run_dir, overrides={"steps": 6}, quiet=True)
    assert resumed.step == 6
    want, got = ckpt.load_safe(reference.checkpoint), ckpt.load_safe(resumed.checkpoint)
    for part in ("generator", "discriminator", "opt_g", "opt_d", "batches"):
        assert_identical(want[part], got[part], part)


# -- a full disk, for real ----------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs: a disk that fills up for real (mounting needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave: int) -> None:
    """Fill the filesystem until ``leave`` bytes are free (in whole pages)."""
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(mount / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    assert os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize <= leave + 4096


def test_a_full_disk_during_a_checkpoint_write_is_one_line_naming_the_file(
    small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_tmpfs / "run"
    train(tiny_config(out, steps=2), quiet=True)
    good = ckpt.checkpoint_path(out, 2)
    before = good.read_bytes()
    fill(small_tmpfs, leave=16 * 1024)  # the config files and log lines fit; a 45 KB checkpoint does not
    code, stderr = run_cli(monkeypatch, capsys, "run", "--resume", out, "--steps", "4", "-q")
    assert code == 1, stderr
    assert stderr_lines(stderr) == [
        f"error: cannot write checkpoint {ckpt.checkpoint_path(out, 4)}: No space left on device; "
        f"the last good checkpoint {good} is intact"
    ]
    assert good.read_bytes() == before and ckpt.load_safe(good)["step"] == 2
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == [good.name], "a half-written file"


def test_a_full_disk_during_export_is_one_line_naming_the_file(
    small_tmpfs: Path, trained_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_tmpfs / "export"
    out.mkdir()
    fill(small_tmpfs, leave=0)
    code, stderr = run_cli(monkeypatch, capsys, "export", trained_run, "--out", out)
    assert code == 1, stderr
    assert stderr_lines(stderr) == [f"error: No space left on device ({out / 'model.safetensors'})"]
    assert list(out.iterdir()) == [], "an export that failed left a file behind"


# -- an export directory as a source ------------------------------------------------


def test_sample_and_eval_read_an_export_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    train(tiny_config(run_dir, steps=3, regularizers=["ema"], metrics=["mixture-modes"]), quiet=True)
    exported = tmp_path / "export"
    assert run_cli(monkeypatch, capsys, "export", run_dir, "--out", exported)[0] == 0
    for name, source in (("run", run_dir), ("export", exported), ("file", exported / "config.json")):
        code, stderr = run_cli(
            monkeypatch, capsys, "sample", source, "--n", "7", "--seed", "5", "--device", "cpu", "--out", tmp_path / f"{name}.pt"
        )  # fmt: skip
        assert code == 0 and stderr == "", stderr
    want = torch.load(tmp_path / "run.pt")
    torch.testing.assert_close(torch.load(tmp_path / "export.pt"), want)  # the EMA weights, as the run samples
    torch.testing.assert_close(torch.load(tmp_path / "file.pt"), want)
    code, stderr = run_cli(monkeypatch, capsys, "sample", exported, "--no-ema", "--out", tmp_path / "raw.pt")
    assert code == 2 and stderr_lines(stderr) == [
        f"error: --no-ema: {exported} is an export of the EMA generator alone; G's own weights are in the run "
        "directory (or export them with 'ganforge export --no-ema')"
    ]
    assert run_cli(monkeypatch, capsys, "eval", run_dir, "--device", "cpu")[0] == 0
    assert run_cli(monkeypatch, capsys, "eval", exported, "--device", "cpu")[0] == 0
    from_run = json.loads((run_dir / "eval.json").read_text())
    from_export = json.loads((exported / "eval.json").read_text())
    assert from_run.keys() == from_export.keys() and from_run
    assert from_export == pytest.approx(from_run, abs=1e-4)


# -- an edited config.toml ----------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (("lr_g = 0.0002", "lr_g = 0.001"), "lr_g 0.001 (the run's 0.0002)"),
        (("hidden = 16", "hidden = 32"), "generator.options.hidden 32 (the run's 16)"),
        (("steps = 4", "steps = 40"), "steps 40 (the run's 4); to train longer, pass --steps N instead"),
    ],
    ids=["lr_g", "hidden", "steps"],
)
def test_resuming_a_run_whose_config_toml_was_edited_is_refused_naming_the_settings(
    edit: tuple[str, str],
    named: str,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    toml = run_dir / "config.toml"
    text = toml.read_text()
    assert edit[0] in text
    toml.write_text(text.replace(edit[0], edit[1], 1))
    code, stderr = run_cli(monkeypatch, capsys, "run", "--resume", run_dir, "-q")
    assert code == 2
    assert stderr_lines(stderr) == [
        f"error: {toml} was edited: {named}; --resume continues the run as {ckpt.checkpoint_path(run_dir, 4)} "
        f"configures it and rewrites config.toml; undo the edit (or delete config.toml) to resume, or train the "
        f"edited configuration as a new run: ganforge run --config {toml} --out NEW"
    ]
    assert toml.read_text() == text.replace(edit[0], edit[1], 1), "the edit was overwritten"
    assert ckpt.list_checkpoints(run_dir)[-1] == ckpt.checkpoint_path(run_dir, 4)
    # The same flags on a run directory left as it was resume (the file is compared, not the flags).
    toml.write_text(text)
    code, stderr = run_cli(monkeypatch, capsys, "run", "--resume", run_dir, "--steps", "5", "-q")
    assert code == 0, stderr
