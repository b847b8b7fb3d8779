"""Interruptions at the edges, against real ``ganforge run`` processes.

* SIGINT during the last step: the run checkpoints, exits 130 and prints a
  command that finishes it (the final samples and evaluation), and that command
  does; a finished run then refuses another resume without a larger ``--steps``.
* A plugin's code that calls ``sys.exit`` or raises ``KeyboardInterrupt`` (a
  lifecycle hook, a regularizer inside a step, a metric in the final
  evaluation): one ``error:`` line naming the plugin and the component, exit
  status 2, the last good state checkpointed, and ``--resume`` continues.

Every signal and exit is timed by a test plugin, installed as a package, that acts
at a chosen step from inside the run (``EDGE_ACTION=where:step:action``): nothing
depends on how fast a loaded machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ganforge_core import checkpoint as ckpt
from test_reliability import TINY_ARGS, assert_one_error_line, install_plugin, logged_steps, subprocess_env

GANFORGE = Path(sys.executable).parent / "ganforge"
pytestmark = pytest.mark.skipif(not GANFORGE.exists(), reason="the ganforge console script is not installed")

EDGE_PLUGIN = """
import os
import signal
import sys

from ganforge_core import Metric, Regularizer, hookimpl


def act(where, step):
    planned = os.environ.get("EDGE_ACTION", "").split(":")
    if len(planned) != 3 or planned[0] != where or int(planned[1]) != step:
        return
    action = planned[2]
    if action == "sigint":
        os.kill(os.getpid(), signal.SIGINT)  # delivered before the next bytecode: inside this step
    elif action == "exit":
        sys.exit(4)
    elif action == "keyboard":
        raise KeyboardInterrupt


class Edge(Regularizer):
    def d_penalty(self, ctx):
        act("regularizer", ctx.step + 1)  # the step being trained, counted as metrics.jsonl counts
        return None


class Points(Metric):
    def compute(self, generate, dataset):
        act("metric", 0)
        return {"mean": float(generate(64).mean())}


@hookimpl
def ganforge_step_end(run, step, stats):
    act("step_end", step)


@hookimpl
def ganforge_register_regularizers(register):
    register("edge", lambda options, ctx: Edge(), summary="acts on EDGE_ACTION inside a step")


@hookimpl
def ganforge_register_metrics(register):
    register("edge-points", lambda options, ctx: Points(), summary="acts on EDGE_ACTION in the evaluation")
"""

STEPS = 12
RUN = ["run", *TINY_ARGS, "--batch-size", "16", "--log-every", "1", "--sample-every", "0", "--metric", "edge-points",
       "--reg", "edge"]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin(tmp_path_factory.mktemp("site"), "edge-test", "ganforge_test_edge", EDGE_PLUGIN)


def ganforge(site: Path, *args: str | Path, action: str = "") -> subprocess.CompletedProcess[str]:
    env = {**subprocess_env(), "PYTHONPATH": str(site), "EDGE_ACTION": action}
    result = subprocess.run(
        [str(GANFORGE), *map(str, args)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def events(run_dir: Path, name: str) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("event") == name]


def test_sigint_in_the_last_step_prints_a_resume_command_that_finishes_the_run(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = ganforge(site, *RUN, "--steps", STEPS, "--out", out, "-q", action=f"regularizer:{STEPS}:sigint")
    assert first.returncode == 130, first.stderr
    line = assert_one_error_line(
        first.stderr,
        f"stopped by SIGINT after the last step ({STEPS}), before the final samples and evaluation",
        f"checkpoint {ckpt.checkpoint_path(out, STEPS)}",
    )
    command = line.split("finish with: ", 1)[1]
    assert command == f"ganforge run --resume {out}"
    assert not (out / "samples.png").exists() and not (out / "results.json").exists()
    assert events(out, "done") == []

    finished = ganforge(site, *command.split()[1:], "-q")
    assert finished.returncode == 0, finished.stderr
    assert f"done: {STEPS} steps" in finished.stdout
    assert (out / "samples.png").stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"edge-points/mean"}
    assert [e["step"] for e in events(out, "eval")] == [STEPS]
    assert [e["step"] for e in events(out, "done")] == [STEPS]
    assert logged_steps(out) == list(range(1, STEPS + 1))
    assert ckpt.latest_loadable(out)[1]["step"] == STEPS

    again = ganforge(site, *command.split()[1:], "-q")
    assert again.returncode == 2
    assert_one_error_line(again.stderr, f"already holds {STEPS} steps; pass --steps N > {STEPS}")


@pytest.mark.parametrize(
    ("action", "culprit", "happened", "saved"),
    [
        # Between steps the state is whole: the step the hook ran at is checkpointed.
        ("step_end:5:exit", "plugin 'edge-test': ganforge_step_end", "called sys.exit(4) at step 5", 5),
        # Inside a step it is half updated: the last checkpoint (--checkpoint-every 2) is the good one.
        ("regularizer:6:keyboard", "plugin 'edge-test': regularizer 'edge'",
         "raised KeyboardInterrupt during step 6, which was cut short and not saved", 4),
        # In the final evaluation every step is trained and checkpointed: --resume finishes it.
        ("metric:0:exit", "plugin 'edge-test': metric 'edge-points'", f"called sys.exit(4) at step {STEPS}", STEPS),
    ],
)  # fmt: skip
def test_a_plugin_that_ends_the_process_is_named_and_the_run_checkpointed(
    site: Path, tmp_path: Path, action: str, culprit: str, happened: str, saved: int
) -> None:
    out = tmp_path / "run"
    args = [*RUN, "--checkpoint-every", "2", "--out", out, "-q"]
    stopped = ganforge(site, *args, "--steps", STEPS, action=action)
    assert stopped.returncode == 2, stopped.stderr
    line = assert_one_error_line(stopped.stderr, f"{culprit}: {happened}; a plugin must not end the run")
    assert line.endswith(f"{ckpt.checkpoint_path(out, saved)}; continue with: ganforge run --resume {out}"), line
    assert ckpt.latest_loadable(out)[1]["step"] == saved
    assert events(out, "done") == []

    resumed = ganforge(site, "run", "--resume", out, "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert logged_steps(out) == list(range(1, STEPS + 1))
    assert [e["step"] for e in events(out, "done")] == [STEPS]
    assert json.loads((out / "results.json").read_text()).keys() == {"edge-points/mean"}
