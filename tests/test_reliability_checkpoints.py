"""Checkpoints are written atomically and loaded safely; bad input is one line.

* A write that fails part-way leaves the previous checkpoint intact and loadable,
  leaves no temporary file, and the error reaches the caller.
* A file crafted to run code when unpickled is refused by ``load_safe``
  (``torch.load(weights_only=True)``) before any of it runs, also through
  ``ganforge run --resume``; truncated, random and mismatched checkpoints are
  refused in one line.
* Bad config files and missing data are one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import pickle
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from ganforge_core import CheckpointError
from ganforge_core import checkpoint as ckpt
from ganforge_core.config import resolve
from ganforge_core.plugins import get_plugins
from ganforge_core.reporting import toml_text
from ganforge_core.run import Run
from ganforge_core.session import train
from test_reliability import assert_one_error_line, run_cli, tiny_config



@functools.cache
def _untrained_state() -> dict[str, Any]:
    """A tiny run's checkpoint state, built without training (every field load_safe checks)."""
    config = tiny_config(Path("unused"))
    return Run(resolve(config, get_plugins().registry), get_plugins(), Path("unused")).state_dict()


def small_state(step: int) -> dict[str, Any]:
    """A complete checkpoint in form, small in size."""
    return {**_untrained_state(), "step": step, "w": torch.randn(4096)}


def temporaries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- atomic writes ----------------------------------------------------------------------


def fail_in_torch_save(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save writes part of the file, then the disk is full."""

    def partial_save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        handle.write(b"PK\x03\x04" + b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    monkeypatch.setattr(ckpt.torch, "save", partial_save)


def fail_in_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """The data is written but cannot be made durable."""

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error (simulated)")

    monkeypatch.setattr(ckpt.os, "fsync", broken_fsync)


def fail_in_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    """The complete temporary file cannot be renamed over the checkpoint."""

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link (simulated)")

    monkeypatch.setattr(ckpt.os, "replace", broken_replace)


@pytest.mark.parametrize("failure", [fail_in_torch_save, fail_in_fsync, fail_in_rename], ids=lambda f: f.__name__)
def test_a_write_that_fails_part_way_keeps_the_previous_checkpoint(
    failure: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ckpt.checkpoint_path(tmp_path, 7)
    ckpt.save_atomic(small_state(1), path)
    before = path.read_bytes()

    failure(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save_atomic(small_state(2), path)
    monkeypatch.undo()

    assert path.read_bytes() == before, "the previous checkpoint was touched"
    assert ckpt.load_safe(path)["step"] == 1
    assert temporaries(tmp_path) == [], "a temporary file was left behind"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_checkpoint_write_failing_in_a_run_is_one_line_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk is the environment's problem, not a bug: one line naming it, not a
    traceback, and the last good checkpoint stays loadable."""
    out = tmp_path / "run"
    real_save, saves = torch.save, []

    def full_disk_from_the_second_save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        saves.append(1)
        if len(saves) >= 2:
            handle.write(b"PK\x03\x04")
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", full_disk_from_the_second_save)
    args = ["run", "--gen", "mlp:hidden=16,depth=1", "--disc", "mlp:hidden=16,depth=1", "--data", "ring-8:n=512"]
    try:
        code, stderr = run_cli(
            monkeypatch, capsys, *args, "--device", "cpu", "--steps", "6", "--checkpoint-every", "2", "--out", out, "-q"
        )
    except OSError as exc:
        pytest.fail(f"a failed checkpoint write escaped as a traceback: {exc!r}")
    assert code != 0
    assert_one_error_line(stderr, "No space left on device")
    assert ckpt.load_safe(ckpt.checkpoint_path(out, 2))["step"] == 2
    assert temporaries(out) == []


def test_temporary_files_left_by_a_killed_write_are_cleaned_up_by_the_next_run(tmp_path: Path) -> None:
    """kill -9 during a checkpoint write leaves '.checkpoint-*.pt.PID.tmp' (the finally
    clause never runs); nothing else ever removes it, so each kill can leak a whole
    checkpoint's worth of disk. A resumed run should sweep them."""
    out = tmp_path / "run"
    train(tiny_config(out, steps=4, checkpoint_every=2), quiet=True)
    stale = out / ".checkpoint-00000005.pt.999999.tmp"
    stale.write_bytes(ckpt.checkpoint_path(out, 4).read_bytes()[:2000])
    train(None, resume=out, overrides={"steps": 6}, quiet=True)
    assert temporaries(out) == [], "stale temporary checkpoint files survive a resumed run"


def test_keep_one_checkpoint_never_deletes_the_only_good_one(tmp_path: Path) -> None:
    """With a corrupt checkpoint of a later step in the run directory (resume skips it
    with a note), pruning ranks by step number: with --keep-checkpoints 1 it keeps the
    corrupt file and deletes each checkpoint the resumed run writes."""
    out = tmp_path / "run"
    train(tiny_config(out, steps=4, checkpoint_every=2, keep_checkpoints=1), quiet=True)
    ckpt.checkpoint_path(out, 9).write_bytes(os.urandom(3000))
    result = train(None, resume=out, overrides={"steps": 8}, quiet=True)
    assert result.checkpoint.exists(), f"{result.checkpoint} was pruned right after it was written"
    assert ckpt.latest_loadable(out)[1]["step"] == 8


# -- safe loading -----------------------------------------------------------------------


class RunsCode:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def crafted_torch_file(path: Path, marker: Path) -> Path:
    """A torch zip checkpoint that looks like ganforge's, with a code-running object inside."""
    torch.save({**small_state(3), "payload": RunsCode(marker)}, path)
    return path


def crafted_legacy_file(path: Path, marker: Path) -> Path:
    """The same in torch's legacy (pre-zip) format: a bare pickle stream after a magic number."""
    torch.save({**small_state(3), "payload": RunsCode(marker)}, path, _use_new_zipfile_serialization=False)
    return path


def crafted_pickle_in_zip(path: Path, marker: Path) -> Path:
    """A genuine ganforge checkpoint whose data.pkl was swapped for a hand-made pickle."""
    torch.save(small_state(3), path)
    with zipfile.ZipFile(path) as original:
        entries = {info.filename: original.read(info) for info in original.infolist()}
    pkl = next(name for name in entries if name.endswith("/data.pkl"))
    entries[pkl] = pickle.dumps(RunsCode(marker), protocol=2)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as crafted:
        for name, data in entries.items():
            crafted.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "craft",
    [crafted_torch_file, crafted_legacy_file, crafted_pickle_in_zip],
    ids=["torch-zip", "legacy", "raw-pickle-in-zip"],
)
def test_a_checkpoint_that_would_run_code_is_refused_before_it_runs(craft: Any, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = craft(tmp_path / "checkpoint-00000003.pt", marker)
    # The payload is live: an unsafe load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists(), "the crafted file should run code under an unsafe load"
    marker.unlink()

    with pytest.raises(CheckpointError) as refused:
        ckpt.load_safe(path)
    assert not marker.exists(), "load_safe ran code from the file"
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and "refused" in message and str(path) in message, message


def test_the_refusal_names_what_the_file_tried_to_load(tmp_path: Path) -> None:
    """A clear refusal says what was blocked (torch's reason is on a later line of its
    message), and does not repeat torch's advice to retry with weights_only=False."""
    path = crafted_torch_file(tmp_path / "checkpoint-00000003.pt", tmp_path / "MARKER")
    with pytest.raises(CheckpointError) as refused:
        ckpt.load_safe(path)
    message = str(refused.value)
    assert "posix.system" in message or "os.system" in message, message
    assert "weights_only` set to `False" not in message, message


def test_resume_refuses_a_crafted_checkpoint_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "MARKER"
    run_dir.mkdir()
    crafted_torch_file(ckpt.checkpoint_path(run_dir, 3), marker)
    code, stderr = run_cli(monkeypatch, capsys, "run", "--resume", run_dir, "-q")
    assert code == 2
    assert_one_error_line(stderr, "refused", str(run_dir))
    assert len(stderr.splitlines()) == 1, stderr
    assert not marker.exists()


def real_checkpoint(tmp_path: Path) -> Path:
    out = tmp_path / "source"
    return train(tiny_config(out, steps=2), quiet=True).checkpoint


@pytest.mark.parametrize("damage", ["truncated", "random-bytes", "empty"])
def test_a_damaged_checkpoint_is_refused_in_one_line(damage: str, tmp_path: Path) -> None:
    good = real_checkpoint(tmp_path)
    path = tmp_path / "checkpoint-00000002.pt"
    content = good.read_bytes()
    damaged = {"truncated": content[: len(content) // 2], "random-bytes": random.Random(0).randbytes(4000), "empty": b""}
    path.write_bytes(damaged[damage])
    with pytest.raises(CheckpointError) as refused:
        ckpt.load_safe(path)
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and str(path) in message, message


def test_random_bytes_are_called_corrupt_not_unsafe(tmp_path: Path) -> None:
    """A file that is not a checkpoint at all must not be reported as one holding
    dangerous objects (which is what torch's unpickler error suggests)."""
    path = tmp_path / "checkpoint-00000002.pt"
    path.write_bytes(random.Random(0).randbytes(4000))
    with pytest.raises(CheckpointError) as refused:
        ckpt.load_safe(path)
    message = str(refused.value)
    assert "corrupt" in message or "not a ganforge checkpoint" in message, message


def test_a_checkpoint_of_another_architecture_names_the_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resume rebuilds the networks from the configuration saved in the checkpoint; when
    that no longer matches the weights (a plugin's defaults changed, a file was edited),
    the one line must say which tensor does not fit and how."""
    out = tmp_path / "run"
    path = train(tiny_config(out, steps=2), quiet=True).checkpoint
    state = torch.load(path, weights_only=True)
    config = json.loads(state["config"])
    config["generator"]["options"]["hidden"] = 24
    state["config"] = json.dumps(config)
    torch.save(state, path)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "config.toml").write_text(toml_text(config))

    with pytest.raises(CheckpointError) as refused:
        train(None, resume=out, overrides={"steps": 4}, quiet=True)
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and str(path) in message, message
    code, stderr = run_cli(monkeypatch, capsys, "run", "--resume", out, "--steps", "4", "-q")
    assert code == 2
    line = assert_one_error_line(stderr, "does not fit")
    assert "net.0.weight" in line and "24" in line and "16" in line, line


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("bad.toml", 'steps = 10\nbatch_size = \nseed = 1\n', "line 2"),
        ("bad.json", '{\n  "steps": 10,\n  "seed": 1,\n}\n', "line 4"),
    ],
)
def test_an_invalid_config_file_is_one_line_naming_the_line(
    name: str,
    text: str,
    where: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / name
    config.write_text(text)
    code, stderr = run_cli(monkeypatch, capsys, "run", "--config", config, "--out", tmp_path / "run")
    assert code == 2
    assert_one_error_line(stderr, str(config), where)
    assert len(stderr.splitlines()) == 1, stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_missing_or_empty_data_is_one_line(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "nonexistent.csv"
    if kind == "empty":
        data.write_text("")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, stderr = run_cli(
            monkeypatch, capsys, "run", "--data", f"mnist-5k:path={data}", "--steps", "2", "--device", "cpu",
            "--out", tmp_path / "run", "-q",
        )  # fmt: skip
    assert code == 2
    assert_one_error_line(stderr, "mnist-5k", str(data))
    assert len(stderr.splitlines()) == 1, stderr
    assert [str(w.message) for w in caught] == [], "a warning would print a second line"
