"""Data-parallel training under ``torchrun``: one process per device, one global batch.

``torchrun --nproc_per_node N -m ganforge_core run ...`` starts N copies of the
command; each finds its place in the job from the environment torchrun sets
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``). A :class:`World` describes that
place. With one process (no torchrun, or ``--nproc_per_node 1``) the world is
:data:`SOLO` and nothing here runs: single-process training is unchanged.

What every rank does the same way (so the ranks never disagree):

* ``--batch-size`` is the global batch. Every rank draws the same permutation of
  the dataset (same seed) and takes its contiguous slice of each global batch, so
  the sampler's state in a checkpoint does not depend on the world size.
* Latents come from one generator that is identical on every rank: each rank
  draws the whole global batch of z and keeps its slice (cheap). Other randomness
  (instance noise, augmentation, a gradient penalty's mixing weights) comes from
  the global RNGs, seeded per rank.
* Gradients are averaged by DistributedDataParallel: the D phase runs the DDP
  discriminator (real, fake and any gradient penalty's double backward, all
  before one backward) and generates fakes through the bare G under ``no_grad``;
  the G phase runs the DDP generator through the bare D, whose parameters are
  frozen, so only G's gradients are reduced.
* Statistics are averaged over the ranks when they are logged, and the
  non-finite check, a stop request (Ctrl-C, SIGTERM) and ``--on-nan skip``
  decisions are agreed on by all ranks, so every rank stops or skips together.

Rank 0 alone writes files (checkpoints, samples, metrics, config) and prints
progress; the others are quiet.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from ganforge_core.errors import ConfigError, GanforgeError

T = TypeVar("T")

TIMEOUT_ENV = "GANFORGE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0  # a collective that waits longer than this ends the job


class PeerLost(GanforgeError):
    """Another rank of a distributed run died or stopped answering."""

    exit_code = 1
    every_rank = True  # each survivor says which rank it is (the others' errors are rank 0's to print)


class _Relayed(GanforgeError):
    """Rank 0's error, re-raised on the other ranks (which print nothing)."""


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not an integer (set by torchrun)") from None


@dataclass(frozen=True)
class World:
    """This process's place in a (possibly one-process) job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def per_rank(self, batch_size: int) -> int:
        return batch_size // self.size

    def describe(self, batch_size: int) -> str:
        if not self.distributed:
            return ""
        return (
            f"distributed: {self.size} ranks ({self.backend}), global batch {batch_size} "
            f"= {self.size} x {self.per_rank(batch_size)} per rank"
        )

    # -- collectives (each is a no-op in a one-process world) -------------------

    def mean_(self, tensor: Tensor) -> Tensor:
        """Average ``tensor`` over the ranks, in place."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(self.size)
        return tensor

    def minimum(self, values: list[int], device: torch.device) -> list[int]:
        """Element-wise minimum of ``values`` over the ranks (one small all-reduce)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.int64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return [int(v) for v in tensor.tolist()]

    def any(self, flag: bool, device: torch.device) -> bool:
        """True when ``flag`` is true on any rank."""
        return flag if not self.distributed else self.minimum([0 if flag else 1], device)[0] == 0

    def all_finite(self, loss: Tensor) -> bool:
        """Whether ``loss`` is finite on every rank (a host sync; used by ``--on-nan skip``)."""
        if not self.distributed:
            return bool(torch.isfinite(loss))
        return self.minimum([int(bool(torch.isfinite(loss)))], loss.device)[0] == 1

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank (pickled; for small state)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def on_main(self, action: Callable[[], T]) -> T | None:
        """Run ``action`` on rank 0 only; the other ranks wait for it to finish.

        A user-facing error raised by ``action`` is raised on every rank (printed by
        rank 0 only), so no rank goes on alone.
        """
        if not self.distributed:
            return action()
        import torch.distributed as dist

        result: T | None = None
        outcome: list[Any] = [None]
        if self.main:
            try:
                result = action()
            except GanforgeError as exc:
                outcome[0] = (type(exc).__name__, str(exc), exc.exit_code)
                dist.broadcast_object_list(outcome, src=0)
                raise
        dist.broadcast_object_list(outcome, src=0)
        if outcome[0] is not None:
            _, message, code = outcome[0]
            relayed = _Relayed(message)
            relayed.exit_code = code
            raise relayed
        return result


SOLO = World()


def restart_count() -> int:
    """How many times ``torchrun --max-restarts`` has restarted this job's workers (0: first start)."""
    return max(_env_int("TORCHELASTIC_RESTART_COUNT", 0), 0)


def detect() -> World:
    """This process's world, from the variables torchrun sets; :data:`SOLO` without them."""
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise ConfigError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local_rank}")
    return World(rank=rank, size=size, local_rank=local_rank) if size > 1 else SOLO


def check_batch(world: World, batch_size: int) -> None:
    """The global batch must split evenly over the ranks."""
    if not world.distributed or batch_size % world.size == 0:
        return
    lower = batch_size - batch_size % world.size
    options = ", ".join(str(b) for b in (lower, lower + world.size) if b > 0)
    raise ConfigError(
        f"--batch-size {batch_size} is the global batch and must split evenly over the {world.size} ranks; "
        f"use a multiple of {world.size} ({options})"
    )


def pick_device(world: World, name: str) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` when CUDA is here."""
    from ganforge_core.fastpath import pick_device as pick_one

    if not world.distributed:
        return pick_one(name)
    if name.startswith("cuda:"):
        raise ConfigError(
            f"--device {name} names one GPU, but under torchrun each rank trains on cuda:LOCAL_RANK; "
            "pass --device cuda (or auto)"
        )
    if name == "mps":
        raise ConfigError("--device mps cannot train distributed (no collective backend); use cuda or cpu")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    pick_one("cuda")  # CUDA must be here
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise ConfigError(
            f"rank {world.rank} has LOCAL_RANK {world.local_rank}, but this node has {count} CUDA devices; "
            f"start at most {count} processes per node (--nproc_per_node)"
        )
    return torch.device("cuda", world.local_rank)


def choose_backend(requested: str, device: torch.device) -> str:
    """``auto``: nccl on CUDA, gloo on the CPU. Refuses a backend this machine cannot run."""
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; distributed training is not available")
    backend = requested if requested != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl":
        if device.type != "cuda":
            raise ConfigError(
                f"--dist-backend nccl needs CUDA devices, but this run trains on {device.type}; "
                "use --dist-backend gloo (or auto)"
            )
        if not dist.is_nccl_available():
            raise ConfigError("--dist-backend nccl is not available in this torch build; use gloo (or auto)")
    elif backend == "gloo" and not dist.is_gloo_available():
        raise ConfigError("--dist-backend gloo is not available in this torch build; use nccl on CUDA (or auto)")
    return backend


def timeout_seconds() -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={text!r} must be a positive number of seconds")
    return value


def start(world: World, device: torch.device, requested_backend: str) -> World:
    """Join the job's process group (a rendezvous with every other rank)."""
    if not world.distributed:
        return world
    import torch.distributed as dist

    backend = choose_backend(requested_backend, device)
    timeout = datetime.timedelta(seconds=timeout_seconds())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            store, rank, size = next(dist.rendezvous("env://", timeout=timeout))
            # torchrun's agent serves one store for all restarts of the job: gloo would read the
            # addresses the previous attempt's (dead) workers left there, so each attempt gets a prefix.
            store = dist.PrefixStore(f"ganforge/attempt_{restart_count()}", store)
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=size, timeout=timeout)
            JOINED[:] = [True]
        except (RuntimeError, ValueError, dist.DistError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"cannot start the {backend} process group: {first}") from None
    return World(world.rank, world.size, world.local_rank, backend)


JOINED: list[bool] = []  # [True] once this process joined a process group (read by cli.main at exit)


def stop(world: World) -> None:
    """Leave the process group (without waiting for the other ranks).

    The group's gloo threads outlive this: DistributedDataParallel pins the process
    group (references that freeing the wrappers and ``gc.collect()`` leave behind), so
    ``destroy_process_group`` does not join them. A native thread that touches Python
    during interpreter finalization (releasing a tensor whose Python object torch
    kept) is unwound by ``pthread_exit``, which through a ``noexcept`` C++ frame is
    ``std::terminate``: "terminate called without an active exception", SIGABRT, on a
    rank that exits right after its last collective (every rank but 0, which goes on
    to the samples and evaluation) on a loaded machine. So a process that joined a
    group ends without finalizing the interpreter (:func:`end_process`).
    """
    if not world.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def end_process(code: int) -> None:
    """Exit with ``code`` now, after flushing stdout and stderr, without interpreter
    finalization, if this process joined a process group (see :func:`stop`); else return."""
    if not JOINED:
        return
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another rank died or hung."""
    import torch.distributed as dist

    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        mark in text for mark in ("gloo", "Gloo", "NCCL", "Connection closed", "Connection reset", "timed out")
    )


def peer_lost(world: World, exc: BaseException, run_dir: object) -> PeerLost:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(first) > 160:
        first = first[:157] + "..."
    return PeerLost(
        f"rank {world.rank}: another rank of this {world.size}-rank run died or stopped answering ({first}); "
        f"stopping. Continue from the last checkpoint with: torchrun ... ganforge run --resume {run_dir}"
    )


# -- networks -----------------------------------------------------------------


def sync_batchnorm(network: nn.Module, device: torch.device) -> nn.Module:
    """Turn every BatchNorm layer into a SyncBatchNorm (statistics over the global batch)."""
    if device.type != "cuda":
        raise ConfigError(
            "--sync-batchnorm needs CUDA: torch's SyncBatchNorm has no CPU kernel. "
            "Drop it (each rank then normalises over its own slice of the batch)"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(network)


def data_parallel(network: nn.Module, device: torch.device, *, sync_buffers: bool) -> nn.Module:
    """``network`` in DistributedDataParallel (parameters broadcast from rank 0 on creation).

    ``sync_buffers``: broadcast rank 0's buffers (BatchNorm running statistics)
    before each forward pass of the wrapper.
    """
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    options: dict[str, Any] = {}
    if device.type == "cuda":
        options["device_ids"] = [device.index]
    # torch >= 2.14 names the per-forward buffer broadcast forward_sync_buffers.
    accepted = inspect.signature(DistributedDataParallel.__init__).parameters
    options["forward_sync_buffers" if "forward_sync_buffers" in accepted else "broadcast_buffers"] = sync_buffers
    return DistributedDataParallel(network, **options)


# -- random number streams ----------------------------------------------------


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A 32-bit seed for ``rank``'s own streams, independent of the other ranks'."""
    return int(np.random.SeedSequence([seed, step, 1, rank]).generate_state(1)[0])


def shared_seed(seed: int, step: int) -> int:
    """A 32-bit seed shared by all ranks (the latent stream, when none was saved)."""
    return int(np.random.SeedSequence([seed, step, 0]).generate_state(1)[0])


def latent_generator(device: torch.device) -> torch.Generator:
    """A generator in the state of the default one on ``device``: the stream a
    one-process run would draw its latents from next."""
    generator = torch.Generator(device=device)
    if device.type == "cuda":
        generator.set_state(torch.cuda.get_rng_state(device))
    else:
        generator.set_state(torch.get_rng_state())
    return generator
