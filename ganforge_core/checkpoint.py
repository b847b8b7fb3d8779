"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a ``torch.save`` file holding tensors and plain data only
(dicts, lists, tuples, numbers, strings). It is loaded with
``torch.load(weights_only=True)``, which refuses any other object, so a crafted
file cannot run code. Writes go to a temporary file in the same directory,
are flushed and fsynced, then renamed over the target: a crash at any moment
leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import torch

from ganforge_core import checkpoint_fields
from ganforge_core.errors import CheckpointError

FORMAT = "ganforge-checkpoint"
FORMAT_VERSION = 1
NAME = re.compile(r"^checkpoint-(\d+)\.pt$")
T = TypeVar("T")
REQUIRED = frozenset(
    {"step", "config", "generator", "discriminator", "opt_g", "opt_d", "regularizers", "batches", "rng"}
)


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / f"checkpoint-{step:08d}.pt"


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` so that ``path`` is always either old or complete."""
    write_atomic(path, lambda handle: torch.save(state, handle))


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(handle)`` into a temporary file beside ``path``, fsynced, then renamed over it.

    A failure removes the temporary file and leaves ``path`` as it was. A failing disk
    raises an OSError naming ``path`` (the disk's own error, such as ENOSPC, even where
    torch reports it as a RuntimeError of its zip writer).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Unbuffered: a failing write raises inside ``write``, not later when a buffer
        # is flushed (torch hides the former in a RuntimeError; _Watched recovers it).
        with open(temporary, "wb", buffering=0) as raw:
            handle = _Watched(raw)
            try:
                write(handle)  # type: ignore[arg-type]
            except RuntimeError:
                if handle.error is None:
                    raise
                raise handle.error from None  # torch's "[enforce fail at inline_container.cc] ... write failed"
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None  # the file meant, not the temporary one
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)


class _Watched:
    """An unbuffered file's writer that writes all it is given (a raw write may write part)
    and remembers the OSError of a failed write (torch hides it in its own error)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw: BinaryIO = raw
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                written = self.raw.write(view[done:])
                if not written:  # a file that takes no more bytes and says no more
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += written
        except OSError as exc:
            self.error = exc
            raise
        return done

    def flush(self) -> None:
        """Nothing is buffered."""


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform can open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_safe(path: Path) -> dict[str, Any]:
    """Load a checkpoint: tensors and plain data only. Raises a one-line CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # not a refused object: bytes that are no pickle at all
            raise CheckpointError(f"{path} is truncated or corrupt (not a torch checkpoint)") from None
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain data "
            f"({_refused_global(str(exc))}); it was not unpickled"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        # torch's unpickler meets junk in many ways; each means the same to the user.
        raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ganforge checkpoint")
    missing = sorted(REQUIRED - state.keys())
    if missing:
        raise CheckpointError(f"{path} is incomplete: it lacks {', '.join(missing)}")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state.get('format_version')}; this ganforge reads {FORMAT_VERSION}"
        )
    checkpoint_fields.check(state, path)
    return state


def _refused_global(message: str) -> str:
    """The line of torch's refusal that names the blocked object (its first line is advice)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or lines or ["unsupported object"])[0]


def step_of(path: Path) -> int | None:
    match = NAME.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints in ``run_dir``, oldest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("checkpoint-*.pt") if (m := NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_loadable(run_dir: Path, before: int | None = None) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]]:
    """The newest checkpoint that loads (of a step below ``before``, if given), and
    (path, reason) for each newer one that did not."""
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    skipped: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(run_dir)):
        if before is not None and (step_of(path) or 0) >= before:
            continue
        try:
            return path, load_safe(path), skipped
        except CheckpointError as exc:
            skipped.append((path, str(exc)))
    detail = f" ({skipped[0][1]})" if skipped else ""
    raise CheckpointError(f"no loadable checkpoint in {run_dir}{detail}")


Loaded = tuple[Path, dict[str, Any], list[tuple[Path, str]]]


def newest_that_fits(
    run_dir: Path, fit: Callable[[Path, dict[str, Any]], T], first: Loaded | None = None
) -> tuple[T, Path, list[tuple[Path, str]]]:
    """``fit(path, state)`` of the newest checkpoint that loads and that ``fit`` takes (it raises
    a CheckpointError for one that does not fit), that checkpoint, and (path, reason) for
    each newer one passed over. A run directory whose newest checkpoint was tampered with
    or does not fit the networks its configuration builds goes on from an older good one.
    ``first``: what :func:`latest_loadable` already returned for ``run_dir``."""
    passed: list[tuple[Path, str]] = []
    before = None
    while True:
        try:
            path, state, skipped = first or latest_loadable(run_dir, before)
        except CheckpointError:
            if not passed:
                raise
            raise CheckpointError(f"no checkpoint in {run_dir} loads and fits ({passed[0][1]})") from None
        first = None
        passed += skipped
        try:
            return fit(path, state), path, passed
        except CheckpointError as exc:
            passed.append((path, str(exc)))
            before = step_of(path)


def passed_over(passed: list[tuple[Path, str]], used: Path) -> list[str]:
    """One warning line per checkpoint :func:`newest_that_fits` passed over, naming both files."""
    return [f"{reason}; using the older {used} instead" for _, reason in passed]


def set_aside(path: Path) -> Path:
    """Rename an unloadable checkpoint so it is kept for inspection but never resumed or counted."""
    target = path.with_name(path.name + ".unloadable")
    os.replace(path, target)
    return target


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files of writes that a crash (kill -9) interrupted."""
    for path in run_dir.glob(".checkpoint-*.pt.*.tmp"):
        path.unlink(missing_ok=True)


def prune(run_dir: Path, keep: int, newest: int) -> None:
    """Keep the ``keep`` newest checkpoints up to step ``newest`` (the one just written)."""
    older = [p for p in list_checkpoints(run_dir) if (step_of(p) or 0) <= newest]
    for path in older[:-keep]:
        path.unlink(missing_ok=True)
