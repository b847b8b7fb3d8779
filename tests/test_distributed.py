"""Data-parallel training under torchrun: two CPU processes on gloo, as in CI.

* Equivalence: two ranks with global batch B reach the parameters one process
  reaches with batch B (a model without BatchNorm), and a two-rank checkpoint
  resumed in one process continues to the same parameters; rank 0 alone writes.
* Inside the step, per rank: the D phase leaves G untouched and the G phase
  leaves D untouched, gradients and weights agree across the ranks, and a
  gradient penalty (D called on real, fake and interpolates, then a double
  backward through DistributedDataParallel) gets the averaged gradient.
* A rank killed mid-run: the job exits non-zero within a bounded time, and a
  restart with ``--resume`` continues from the last checkpoint; under
  ``torchrun --max-restarts`` the restarted command continues by itself.
* Bad setups are one ``error:`` line: a batch the ranks cannot share, a backend
  this machine lacks, SyncBatchNorm on the CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from ganforge_core import RunConfig, distributed
from ganforge_core import checkpoint as ckpt
from ganforge_core.errors import ConfigError
from ganforge_core.session import train
from test_reliability import assert_one_error_line, run_cli, subprocess_env

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
GANFORGE_RUN = [*TORCHRUN, "-m", "ganforge_core", "run"]
NO_BATCHNORM = {
    "generator": "mlp:hidden=24,depth=2,batchnorm=false",
    "discriminator": "mlp:hidden=24,depth=2",
    "dataset": "ring-8:n=512",
    "metrics": ["mixture-modes"],
    "device": "cpu",
    "batch_size": 32,
    "log_every": 4,
    "sample_every": 0,
    "checkpoint_every": 6,
    "keep_checkpoints": 2,
    "scheduler": "constant:d_steps=2",
}
TINY_DCGAN = [
    "--gen", "dcgan:width=4,z_dim=8", "--disc", "dcgan:width=4", "--data", "mnist-5k:size=16", "--loss", "wgan-gp",
    "--sched", "constant:d_steps=1", "--device", "cpu", "--metric", "none",
]  # fmt: skip


def flags(settings: dict) -> list[str]:
    names = {
        "generator": "--gen",
        "discriminator": "--disc",
        "dataset": "--data",
        "scheduler": "--sched",
        "metrics": "--metric",
        "regularizers": "--reg",
    }
    args: list[str] = []
    for key, value in settings.items():
        for item in value if isinstance(value, list) else [value]:
            args += [names.get(key, "--" + key.replace("_", "-")), str(item)]
    return args


def torchrun(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GANFORGE_RUN, *map(str, args)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    state = ckpt.load_safe(path)
    return {f"{net}.{k}": v for net in ("generator", "discriminator") for k, v in state[net].items()}


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs")


def test_two_ranks_train_like_one_process_and_rank_0_alone_writes(tmp_path: Path) -> None:
    steps = 12
    one = train(RunConfig(**NO_BATCHNORM, steps=steps, out=tmp_path / "one"), quiet=True)
    two = tmp_path / "two"
    done = torchrun(*flags(NO_BATCHNORM), "--steps", steps, "--out", two)
    assert done.returncode == 0, done.stderr
    # Same global batch, same parameters (up to the order of float additions).
    assert_close(weights(two / "checkpoint-00000012.pt"), weights(one.checkpoint))
    # Rank 0 alone reports and writes: one first line naming the split, one summary,
    # one record per log interval, no stray files.
    firsts = [line for line in done.stderr.splitlines() if line.startswith("training on")]
    assert len(firsts) == 1 and "2 ranks (gloo), global batch 32 = 2 x 16 per rank" in firsts[0], done.stderr
    assert done.stdout.count("done: 12 steps") == 1, done.stdout
    records = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "event" not in r] == [4, 8, 12]
    written = {p.name for p in two.iterdir()}
    assert written == {"checkpoint-00000006.pt", "checkpoint-00000012.pt", "config.json", "config.toml",
                       "losses.png", "metrics.jsonl", "results.json", "samples.png"}  # fmt: skip
    # The logged statistics are the global batch's: the same as one process's.
    single = [json.loads(line) for line in (one.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in single] == [r["step"] for r in records]
    for mine, theirs in zip(records, single, strict=True):
        for key in ("loss/d", "loss/g", "d/real", "d/fake"):
            if key in theirs:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-5), key
    # Resume on another world size: the two-rank checkpoint of step 6, continued by one
    # process, reaches the same step-12 parameters.
    again = tmp_path / "again"
    shutil.copytree(two, again)
    (again / "checkpoint-00000012.pt").unlink()
    resumed = train(None, resume=again, quiet=True)
    assert resumed.step == steps
    assert_close(weights(resumed.checkpoint), weights(one.checkpoint))


def test_two_ranks_with_lazy_r1_train_like_one_process(tmp_path: Path) -> None:
    """The D reg phase through DDP: R1 reaches no bias of D's last layer, and DDP waits for
    every gradient; the reg phase's zero term gives it one, so the job trains as one process."""
    lazy = {**NO_BATCHNORM, "regularizers": ["r1:gamma=1,every=3"], "metrics": [], "checkpoint_every": 0}
    one = train(RunConfig(**lazy, steps=6, out=tmp_path / "one"), quiet=True)
    two = tmp_path / "two"
    done = torchrun(*flags(lazy), "--steps", 6, "--out", two)
    assert done.returncode == 0, done.stderr
    assert_close(weights(two / "checkpoint-00000006.pt"), weights(one.checkpoint))


def test_two_ranks_grow_progan_through_its_stages_like_one_process(tmp_path: Path) -> None:
    """A growing network under DDP: each stage leaves the later stages' layers without gradients, which
    DDP must not wait for; the job crosses every stage change and trains as one process does (one
    sample per minibatch-std group, so no statistic couples the ranks' halves of the batch)."""
    growing = {
        "generator": "progan:width=4,z_dim=4", "discriminator": "progan:width=4,group_size=1",
        "dataset": "mnist-5k:size=8", "device": "cpu", "batch_size": 8, "metrics": [], "checkpoint_every": 0,
        "sample_every": 0, "log_every": 2,
    }  # fmt: skip
    steps = 8  # 8x8 images: stages 4x4 and 8x8, the second fading in from step 4
    one = train(RunConfig(**growing, steps=steps, out=tmp_path / "one"), quiet=True)
    two = tmp_path / "two"
    done = torchrun(*flags(growing), "--steps", steps, "--out", two)
    assert done.returncode == 0, done.stderr
    assert_close(weights(two / f"checkpoint-{steps:08d}.pt"), weights(one.checkpoint))


INSIDE_THE_STEP = """
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ganforge_core import DContext, RunConfig, distributed
from ganforge_core.config import resolve
from ganforge_core.plugins import get_plugins
from ganforge_core.run import Run

world = distributed.start(distributed.detect(), torch.device("cpu"), "auto")
plugins = get_plugins()
config = RunConfig(
    generator="mlp:hidden=16,depth=1,batchnorm=false", discriminator="mlp:hidden=16,depth=1",
    dataset="ring-8:n=256", loss="wgan-gp", batch_size=16, steps=4, device="cpu",
)
run = Run(resolve(config, plugins.registry), plugins, Path(sys.argv[1]), world)
engine, G, D = run.engine, run.generator, run.discriminator


def snapshot(net):
    return [p.detach().clone() for p in net.parameters()]


def agree(tensors, what):
    for tensor in tensors:
        theirs = world.gather(tensor)
        assert all(torch.equal(t, theirs[0]) for t in theirs), f"{what} differ across ranks"


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


for step in range(2):
    real, _ = engine.batches.draw()
    assert real.shape[0] == 8  # this rank's slice of the global 16
    g_before, d_before = snapshot(G), snapshot(D)
    for p in G.parameters():
        p.grad = None
    engine.d_phase(real, step)
    assert all(p.grad is None for p in G.parameters()), "the D phase reached G"
    assert same(snapshot(G), g_before), "the D phase changed G"
    assert not same(snapshot(D), d_before), "the D phase did not step D"
    agree([p.grad for p in D.parameters()], "D's gradients")
    agree(snapshot(D), "D's weights")
    d_after, d_grads = snapshot(D), [p.grad.clone() for p in D.parameters()]
    engine.g_phase(real, step)
    assert same(snapshot(D), d_after), "the G phase changed D"
    assert same([p.grad for p in D.parameters()], d_grads), "the G phase wrote D's gradients"
    assert all(p.requires_grad for p in D.parameters())
    agree([p.grad for p in G.parameters()], "G's gradients")
    agree(snapshot(G), "G's weights")

# A gradient penalty through DDP: D runs on real, fake and interpolates, then one
# backward through the penalty's double backward. The DDP gradient must be the mean
# over the ranks of the gradients each rank computes alone.
real, _ = engine.batches.draw()
with torch.no_grad():
    fake = G(torch.randn(real.shape[0], engine.z_dim))


def d_gradients(critic):
    torch.manual_seed(100 + world.rank)  # the interpolation weights: this rank's own
    D.zero_grad(set_to_none=True)
    ctx = DContext(critic, real, fake, engine.targets, 0, 0.0)
    engine.loss.d_loss(critic(real).float(), critic(fake).float(), ctx).backward()
    return [p.grad.clone() for p in D.parameters()]


alone = d_gradients(D)
for grad in alone:
    dist.all_reduce(grad)
    grad /= world.size
through_ddp = d_gradients(engine.train_discriminator)
for a, b in zip(alone, through_ddp, strict=True):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
print(f"rank {world.rank} ok", flush=True)
distributed.stop(world)
"""


def test_each_rank_keeps_the_phases_isolated_and_ddp_averages_a_gradient_penalty(tmp_path: Path) -> None:
    script = tmp_path / "inside.py"
    script.write_text(textwrap.dedent(INSIDE_THE_STEP))
    done = subprocess.run(
        [*TORCHRUN, str(script), str(tmp_path / "run")],
        env=subprocess_env(), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 0 ok" in done.stdout and "rank 1 ok" in done.stdout, done.stdout  # (their lines may interleave)


def _workers(agent: int) -> list[int]:
    children = Path(f"/proc/{agent}/task/{agent}/children").read_text().split()
    return [int(pid) for pid in children]


def _local_rank(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = [item for item in environ if item.startswith(b"LOCAL_RANK=")]
    return found[0].split(b"=", 1)[1].decode() if found else None


def _rank_1_once_checkpointed(job: subprocess.Popen, out: Path, logs: Path, poll: float = 0.2) -> int:
    """Wait (at most 180 s) for the job's first checkpoint, then return its rank-1 worker's pid."""
    deadline = time.monotonic() + 180
    while not (out.exists() and ckpt.list_checkpoints(out)):
        assert job.poll() is None, logs.read_text()
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(poll)
    victims = [pid for pid in _workers(job.pid) if _local_rank(pid) == "1"]
    assert len(victims) == 1, _workers(job.pid)
    return victims[0]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the workers through /proc (Linux)")
def test_a_killed_rank_ends_the_job_and_resume_continues(tmp_path: Path) -> None:
    out = tmp_path / "run"
    logs = tmp_path / "job.log"
    args = [*TINY_DCGAN, "--batch-size", "8", "--steps", "100000", "--checkpoint-every", "2", "--log-every", "2"]
    with open(logs, "w") as log:
        job = subprocess.Popen(
            [*GANFORGE_RUN, *args, "--sample-every", "0", "--out", str(out)],
            env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        os.kill(_rank_1_once_checkpointed(job, out, logs), signal.SIGKILL)
        killed = time.monotonic()
        code = job.wait(timeout=90)
        waited = time.monotonic() - killed
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert code != 0, logs.read_text()
    assert waited < 60, f"the job took {waited:.0f} s to stop after a rank died"
    last = ckpt.step_of(ckpt.list_checkpoints(out)[-1])
    assert last is not None and last >= 2
    resumed = torchrun("--resume", out, "--steps", last + 2)
    assert resumed.returncode == 0, resumed.stderr
    assert f"done: {last + 2} steps" in resumed.stdout
    assert ckpt.list_checkpoints(out)[-1].name == f"checkpoint-{last + 2:08d}.pt"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "event" not in r] == list(range(2, last + 3, 2))


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the workers through /proc (Linux)")
def test_a_rank_that_hangs_ends_the_job_after_the_timeout(tmp_path: Path) -> None:
    """A rank stopped with SIGSTOP neither dies nor answers: rank 0's next collective
    times out after GANFORGE_DIST_TIMEOUT, it says so in one line, and the job ends."""
    out = tmp_path / "run"
    logs = tmp_path / "job.log"
    args = [*TINY_DCGAN, "--batch-size", "8", "--steps", "100000", "--checkpoint-every", "2", "--log-every", "2"]
    with open(logs, "w") as log:
        job = subprocess.Popen(
            [*GANFORGE_RUN, *args, "--sample-every", "0", "--out", str(out)],
            env={**subprocess_env(), "GANFORGE_DIST_TIMEOUT": "5"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    victims: list[int] = []
    try:
        victims = [_rank_1_once_checkpointed(job, out, logs)]
        os.kill(victims[0], signal.SIGSTOP)
        code = job.wait(timeout=150)  # 5 s timeout, then torchrun's 30 s grace before it kills the stopped rank
    finally:
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    text = logs.read_text()
    assert code != 0, text
    errors = [line for line in text.splitlines() if line.startswith("error: rank 0:")]
    assert len(errors) == 1 and "stopped answering" in errors[0] and "--resume" in errors[0], text
    assert "Timed out" in errors[0], errors[0]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the workers through /proc (Linux)")
def test_torchrun_restarts_continue_the_run_from_its_last_checkpoint(tmp_path: Path) -> None:
    """``torchrun --max-restarts 1`` reruns the same command line after a rank dies; the
    run picks up its --out directory's last checkpoint instead of refusing a non-empty one."""
    out = tmp_path / "run"
    logs = tmp_path / "job.log"
    command = [*TORCHRUN[:-2], "--nproc_per_node", "2", "--max-restarts", "1", "-m", "ganforge_core", "run"]
    args = ["--gen", "mlp:hidden=16,depth=1", "--data", "ring-8:n=256", "--device", "cpu", "--batch-size", "8",
            "--steps", "400", "--checkpoint-every", "20", "--log-every", "20", "--sample-every", "0"]  # fmt: skip
    with open(logs, "w") as log:
        job = subprocess.Popen(
            [*command, *args, "--out", str(out)],
            env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        os.kill(_rank_1_once_checkpointed(job, out, logs, poll=0.1), signal.SIGKILL)
        code = job.wait(timeout=240)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    text = logs.read_text()
    assert code == 0, text
    assert "torchrun restart 1: resuming" in text, text
    assert ckpt.list_checkpoints(out)[-1].name == "checkpoint-00000400.pt"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "event" not in r] == list(range(20, 401, 20))


END_OF_A_WORKER = """
import atexit, sys
from ganforge_core import distributed
from ganforge_core.cli import main
atexit.register(lambda: print("finalized", flush=True))
distributed.JOINED[:] = [True]  # what distributed.start records after init_process_group
sys.argv = ["ganforge", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(("args", "code", "shown"), [(["plugins"], 0, "ring-8"), (["run", "--steps", "0"], 2, "error:")])
def test_a_process_that_joined_a_group_ends_without_finalizing_the_interpreter(args, code, shown) -> None:
    """The gloo threads of a process group outlive destroy_process_group (DDP pins the group),
    and one that touches Python during interpreter finalization aborts the rank ('terminate
    called without an active exception'): so a worker ends with os._exit, its output flushed
    and its exit status kept, and nothing runs at exit."""
    result = subprocess.run([sys.executable, "-c", END_OF_A_WORKER, *args], env=subprocess_env(),
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == code, result.stderr
    assert shown in result.stdout + result.stderr
    assert "finalized" not in result.stdout, "the interpreter was finalized (atexit ran)"


# -- bad setups: one line, before any process group ---------------------------------


@pytest.fixture
def rank_0_of_2(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)


TINY_RING = ["--gen", "mlp:hidden=8,depth=1", "--data", "ring-8:n=128", "--steps", "1", "-q"]


def test_a_batch_the_ranks_cannot_share_is_one_error_line(rank_0_of_2, monkeypatch, capsys, tmp_path) -> None:
    code, stderr = run_cli(monkeypatch, capsys, "run", *TINY_RING, "--batch-size", "7", "--device", "cpu",
                           "--out", tmp_path / "r")  # fmt: skip
    assert code == 2
    assert_one_error_line(stderr, "--batch-size 7", "2 ranks", "multiple of 2 (6, 8)")
    # The per-rank batch must suit every component too: packing m=8 splits 8, not 4.
    code, stderr = run_cli(monkeypatch, capsys, "run", *TINY_RING, "--batch-size", "8", "--reg", "packing:m=8",
                           "--device", "cpu", "--out", tmp_path / "r")  # fmt: skip
    assert code == 2
    assert_one_error_line(stderr, "4 of the global --batch-size 8")
    # The other ranks stay quiet: rank 0 says it.
    monkeypatch.setenv("RANK", "1")
    code, stderr = run_cli(monkeypatch, capsys, "run", *TINY_RING, "--batch-size", "7", "--device", "cpu",
                           "--out", tmp_path / "r")  # fmt: skip
    assert code == 2 and "error:" not in stderr, stderr


def test_a_backend_this_machine_lacks_is_one_error_line(rank_0_of_2, monkeypatch, capsys, tmp_path) -> None:
    code, stderr = run_cli(monkeypatch, capsys, "run", *TINY_RING, "--batch-size", "8", "--device", "cpu",
                           "--dist-backend", "nccl", "--out", tmp_path / "r")  # fmt: skip
    assert code == 2
    assert_one_error_line(stderr, "nccl needs CUDA", "gloo")
    code, stderr = run_cli(monkeypatch, capsys, "run", *TINY_RING, "--batch-size", "8", "--device", "cuda:1",
                           "--out", tmp_path / "r")  # fmt: skip
    assert code == 2
    assert_one_error_line(stderr, "cuda:LOCAL_RANK")
    with pytest.raises(ConfigError, match="SyncBatchNorm has no CPU kernel"):
        distributed.sync_batchnorm(nn.Sequential(nn.BatchNorm1d(2)), torch.device("cpu"))
