"""Signals and kill -9 against real ``ganforge run`` processes.

* SIGINT and SIGTERM: the run finishes its step, checkpoints, prints one line
  saying where the checkpoint is and how to resume, and exits 128 + the signal
  (130, 143); ``ganforge run --resume DIR --steps M`` continues to M.
* SIGKILL at random moments (a seeded ``random.Random``), including in the
  middle of checkpoint writes: every time, the newest checkpoint on disk loads,
  ``--resume`` picks it up, and the run finally completes with one log record
  per step.

The first process is the ``ganforge`` console script itself. Importing torch
costs a fresh interpreter seconds of CPU, so the resumed processes are forked
from a *zygote*: an interpreter that imported ganforge once and forks a child
per command, which runs the console script's entry point
(``ganforge_core.cli.main``) with the command's arguments. Each child is a
separate process with its own pid, signal handlers and exit status.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ganforge_core import checkpoint as ckpt
from test_reliability import GANFORGE, TINY_ARGS, assert_one_error_line, logged_steps, subprocess_env

pytestmark = pytest.mark.skipif(not GANFORGE.exists(), reason="the ganforge console script is not installed")

TIMEOUT = 180  # seconds for anything to happen on a busy machine

ZYGOTE = r"""
import json, os, sys
import torch, torchvision
torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # what the first optimizer imports
from ganforge_core.cli import main
from ganforge_core.plugins import get_plugins
get_plugins()
print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(request["cwd"])
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            sys.argv = ["ganforge", *request["args"]]
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print("pid", pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("exit", os.waitstatus_to_exitcode(status), flush=True)
"""


class Process:
    """What the tests need of a ``ganforge`` process."""

    pid: int

    def poll(self) -> int | None:
        raise NotImplementedError

    def finish(self) -> tuple[int, str, str]:
        """Wait for the exit: (status, stdout, stderr); a signal's death is -signum."""
        raise NotImplementedError

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)


class Script(Process):
    """The ``ganforge`` console script in a fresh interpreter."""

    def __init__(self, cwd: Path, args: list[str]) -> None:
        self.popen = subprocess.Popen(
            [str(GANFORGE), *args],
            cwd=cwd,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def finish(self) -> tuple[int, str, str]:
        out, err = self.popen.communicate(timeout=TIMEOUT)
        return self.popen.returncode, out, err


class Zygote:
    """An interpreter with ganforge imported that forks one ``ganforge`` child per command."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.popen = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            cwd=cwd,
            env=subprocess_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.count = 0

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.strip())
        self.lines.put("closed")

    def next_line(self, timeout: float = TIMEOUT) -> str:
        line = self.lines.get(timeout=timeout)
        if line == "ready":
            line = self.lines.get(timeout=timeout)
        assert line != "closed", f"the zygote exited with {self.popen.wait()}"
        return line

    def run(self, cwd: Path, *args: str | Path) -> Forked:
        """``ganforge ARGS`` in a child working in ``cwd``."""
        self.count += 1
        out, err = self.cwd / f"child-{self.count}.out", self.cwd / f"child-{self.count}.err"
        request = {"args": [str(a) for a in args], "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(request) + "\n")
        self.popen.stdin.flush()
        word, pid = self.next_line().split()
        assert word == "pid", word
        return Forked(self, int(pid), out, err)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()


class Forked(Process):
    def __init__(self, zygote: Zygote, pid: int, out: Path, err: Path) -> None:
        self.zygote, self.pid, self.out, self.err = zygote, pid, out, err
        self.status: int | None = None

    def poll(self) -> int | None:
        if self.status is None:
            try:
                line = self.zygote.lines.get_nowait()
            except queue.Empty:
                return None
            self.status = int(line.split()[1])
        return self.status

    def finish(self) -> tuple[int, str, str]:
        if self.status is None:
            word, status = self.zygote.next_line().split()
            assert word == "exit", word
            self.status = int(status)
        return self.status, self.out.read_text(), self.err.read_text()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    started = Zygote(tmp_path_factory.mktemp("zygote"))
    try:
        yield started
    finally:
        started.close()


def no_metrics_config(tmp_path: Path) -> Path:
    """End-of-run metrics are not what these tests are about; --config is the way to turn them off."""
    path = tmp_path / "no-metrics.json"
    path.write_text(json.dumps({"metrics": []}))
    return path


def lines_logged(run_dir: Path) -> int:
    """Statistics records in metrics.jsonl so far (not warnings; a line being written may be torn)."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if line.endswith("}") and '"event"' not in line)


def newest_checkpoint_step(run_dir: Path) -> int:
    kept = ckpt.list_checkpoints(run_dir) if run_dir.is_dir() else []
    found = ckpt.NAME.match(kept[-1].name) if kept else None
    return int(found.group(1)) if found else 0


def wait_until(process: Process, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if process.poll() is not None:
            code, _, err = process.finish()
            pytest.fail(f"ganforge exited with {code} before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            process.send_signal(signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_signals_checkpoint_say_how_to_resume_and_resume_continues(tmp_path: Path, zygote: Zygote) -> None:
    run_dir = tmp_path / "run"
    first = ["--config", str(no_metrics_config(tmp_path)), *TINY_ARGS, "--log-every", "1", "--out", str(run_dir)]
    reached = 0
    for number, signum in enumerate((signal.SIGINT, signal.SIGTERM)):
        if number == 0:
            process: Process = Script(tmp_path, ["run", *first, "--steps", "100000", "-q"])
        else:
            process = zygote.run(tmp_path, "run", "--resume", run_dir, "--steps", "100000", "-q")
        wait_until(process, lambda: lines_logged(run_dir) >= reached + 3, "a few steps were logged")
        process.send_signal(signum)
        code, _, err = process.finish()

        name = signal.Signals(signum).name
        assert code == 128 + signum, (code, err[-2000:])
        line = assert_one_error_line(err, f"stopped by {name}", f"continue with: ganforge run --resume {run_dir}")
        found = re.search(r"checkpoint (\S+\.pt)", line)
        assert found, line
        state = ckpt.load_safe(Path(found.group(1)))
        assert state["step"] >= reached + 3, "the checkpoint holds the steps done before the signal"
        assert logged_steps(run_dir) == list(range(1, state["step"] + 1))
        reached = state["step"]

    target = reached + 5
    code, out, err = zygote.run(tmp_path, "run", "--resume", run_dir, "--steps", target, "-q").finish()
    assert code == 0, err[-2000:]
    assert f"done: {target} steps" in out
    assert logged_steps(run_dir) == list(range(1, target + 1))
    assert ckpt.latest_loadable(run_dir)[1]["step"] == target


def test_kill_9_at_random_moments_never_loses_the_run(tmp_path: Path, zygote: Zygote) -> None:
    chance = random.Random(20261123)
    run_dir = tmp_path / "run"
    every = ["--log-every", "1", "--checkpoint-every", "1", "--keep-checkpoints", "2"]
    first = ["--config", no_metrics_config(tmp_path), *TINY_ARGS, *every, "--out", run_dir]
    reached, kills = 0, []
    for number in range(4):
        args = first if number == 0 else ["--resume", run_dir]
        process = zygote.run(tmp_path, "run", *args, "--steps", "100000", "-q")
        # Training is under way once this process has written a checkpoint of its own;
        # from then on, a checkpoint is being written a good part of the time.
        wait_until(process, lambda: newest_checkpoint_step(run_dir) > reached, "a first checkpoint")
        delay = chance.uniform(0.0, 0.5)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        code, _, err = process.finish()
        assert code == -signal.SIGKILL, (code, err[-2000:])

        path, state, skipped = ckpt.latest_loadable(run_dir)
        assert skipped == [], f"kill -9 after {delay:.2f}s left a checkpoint that does not load: {skipped}"
        assert path == ckpt.list_checkpoints(run_dir)[-1]
        assert state["step"] > reached
        torn_writes = len(list(run_dir.glob(".checkpoint-*.tmp")))  # kills that landed inside a write
        kills.append((round(delay, 2), state["step"], torn_writes))
        reached = state["step"]

    target = reached + 5
    code, out, err = zygote.run(tmp_path, "run", "--resume", run_dir, "--steps", target, "-q").finish()
    assert code == 0, (kills, err[-2000:])
    assert f"done: {target} steps" in out
    assert logged_steps(run_dir) == list(range(1, target + 1)), kills
    assert ckpt.latest_loadable(run_dir)[1]["step"] == target
