"""A run from start to finish: build from a plan, loop over steps, record, checkpoint, evaluate.

The step itself lives in :mod:`ganforge_core.engine`; this module owns
everything around it: the run directory, seeding, the progress view,
``metrics.jsonl``, sample grids, checkpoints, signals and the lifecycle hooks.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganforge_core import checkpoint as ckpt
from ganforge_core.batches import BatchSampler
from ganforge_core.components import BuildContext, Dataset, Regularizer
from ganforge_core.config import Plan, RunConfig, resolve
from ganforge_core.engine import Engine
from ganforge_core.errors import CheckpointError, ConfigError, GanforgeError, TrainingDiverged
from ganforge_core.plugins import Plugins, get_plugins
from ganforge_core.reporting import MetricsLog, ProgressView, save_samples
from ganforge_core.version import __version__

SAMPLE_GRID = 64  # images in a sample grid
SAMPLE_CLOUD = 2500  # points in a 2D scatter (PacGAN evaluates this many)


class Interrupted(GanforgeError):
    """Training stopped by SIGINT or SIGTERM after checkpointing."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunContext:
    """What lifecycle hooks see of a run."""

    config: RunConfig
    run_dir: Path
    device: torch.device
    start_step: int
    generator: nn.Module
    discriminator: nn.Module
    dataset: Dataset
    warn: Callable[[str], None] = print
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    run_dir: Path
    step: int
    results: dict[str, float]
    checkpoint: Path
    samples: Path


@dataclass(frozen=True)
class FastPath:
    """Speed features for this run; each can be turned off in the config."""

    autocast: torch.dtype | None
    channels_last: bool
    fused_adam: bool
    cuda_graph: bool
    graph_blocker: str = ""

    def describe(self) -> str:
        on = [
            name
            for name, enabled in (
                ("bf16 autocast", self.autocast is not None),
                ("channels-last", self.channels_last),
                ("fused Adam", self.fused_adam),
                ("CUDA graph", self.cuda_graph),
            )
            if enabled
        ]
        text = "fast path: " + (", ".join(on) if on else "off (eager fp32)")
        return text + (f"; no CUDA graph: {self.graph_blocker}" if self.graph_blocker else "")


def choose_fast_path(plan: Plan, device: torch.device, data_dims: int) -> FastPath:
    config, cuda = plan.config, device.type == "cuda"
    wants_bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
    blockers = [c.component.label for c in (plan.loss, *plan.regularizers) if "graph-safe" not in c.traits]
    blocker = ""
    if cuda and config.cuda_graph and blockers:
        blocker = f"{blockers[0]} depends on the step number or host values (not graph-safe)"
    return FastPath(
        autocast=torch.bfloat16 if wants_bf16 else None,
        channels_last=cuda and config.channels_last and data_dims == 4,
        fused_adam=cuda and config.fused_adam,
        cuda_graph=cuda and config.cuda_graph and not blockers,
        graph_blocker=blocker,
    )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but CUDA is not available here; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.generator.name}-{config.loss.name}-{config.dataset.name}"


class Run:
    """One training run, built from a resolved plan."""

    def __init__(self, plan: Plan, plugins: Plugins, run_dir: Path) -> None:
        self.plan, self.plugins, self.run_dir = plan, plugins, run_dir
        config = plan.config
        self.device = pick_device(config.device)
        seed_everything(config.seed)
        data_ctx = BuildContext(
            data_shape=(),
            num_classes=0,
            total_steps=config.steps,
            batch_size=config.batch_size,
            device=self.device,
            seed=config.seed,
        )
        self.dataset: Dataset = plan.dataset.component.build(plan.dataset.options, data_ctx)
        if config.batch_size > len(self.dataset):
            raise ConfigError(
                f"--batch-size {config.batch_size} exceeds the {len(self.dataset)} samples of "
                f"dataset '{config.dataset.name}'"
            )
        if config.conditional and self.dataset.labels is None:
            raise ConfigError(f"--conditional: dataset '{config.dataset.name}' returned no labels")
        self.ctx = BuildContext(
            data_shape=self.dataset.shape,
            num_classes=self.dataset.num_classes,
            total_steps=config.steps,
            batch_size=config.batch_size,
            device=self.device,
            seed=config.seed,
            loss_traits=plan.loss.traits,
            data_info=self.dataset.info,
            conditional=config.conditional,
        )
        self.regularizers: dict[str, Regularizer] = {
            r.component.name: r.component.build(r.options, self.ctx) for r in plan.regularizers
        }
        d_input_shape = self.dataset.shape
        for reg in self.regularizers.values():
            d_input_shape = reg.d_input_shape(d_input_shape)
        self.ctx.d_input_shape = d_input_shape
        generator = plan.generator.component.build(plan.generator.options, self.ctx)
        discriminator = plan.discriminator.component.build(plan.discriminator.options, self.ctx)
        for reg in self.regularizers.values():
            generator = reg.wrap_generator(generator)
            discriminator = reg.wrap_discriminator(discriminator)
        self.fast = choose_fast_path(plan, self.device, self.dataset.samples.dim())
        layout = torch.channels_last if self.fast.channels_last else torch.contiguous_format
        self.generator = generator.to(self.device, memory_format=layout)
        self.discriminator = discriminator.to(self.device, memory_format=layout)
        samples = self.dataset.samples.to(self.device).contiguous(memory_format=layout)
        labels = self.dataset.labels.to(self.device) if config.conditional else None
        assert config.lr_g is not None and config.lr_d is not None
        self.engine = Engine(
            generator=self.generator,
            discriminator=self.discriminator,
            loss=plan.loss.component.build(plan.loss.options, self.ctx),
            regularizers=self.regularizers,
            schedule=plan.scheduler.component.build(plan.scheduler.options, self.ctx),
            opt_g=self._adam(self.generator, config.lr_g),
            opt_d=self._adam(self.discriminator, config.lr_d),
            batches=BatchSampler(samples, config.batch_size, config.seed, labels),
            total_steps=config.steps,
            autocast_dtype=self.fast.autocast,
            cuda_graph=self.fast.cuda_graph,
        )
        fixed = torch.Generator().manual_seed(config.seed + 1)
        if self.dataset.samples.dim() == 2:
            shown = SAMPLE_CLOUD
        else:
            shown = 8 * self.dataset.num_classes if config.conditional else SAMPLE_GRID
        self.fixed_latents = torch.randn(shown, self.engine.z_dim, generator=fixed).to(self.device)
        # Conditional grids show the classes in order, one per column.
        self.fixed_labels = (
            torch.arange(shown, device=self.device) % self.dataset.num_classes if config.conditional else None
        )
        self.step = 0

    def _adam(self, network: nn.Module, lr: float) -> torch.optim.Adam:
        if not self.fast.cuda_graph:
            return torch.optim.Adam(
                network.parameters(), lr=lr, betas=self.plan.config.betas, fused=self.fast.fused_adam or None
            )
        # A captured optimizer step reads its learning rate from the device.
        return torch.optim.Adam(
            network.parameters(),
            lr=torch.tensor(lr, device=self.device),
            betas=self.plan.config.betas,
            fused=self.fast.fused_adam or None,
            capturable=True,
        )

    # -- state -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        return {
            "format": ckpt.FORMAT,
            "format_version": ckpt.FORMAT_VERSION,
            "ganforge_version": __version__,
            "step": self.step,
            "config": self.plan.config.model_dump_json(),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.engine.opt_g.state_dict(),
            "opt_d": self.engine.opt_d.state_dict(),
            "regularizers": {name: reg.state_dict() for name, reg in self.regularizers.items()},
            "batches": self.engine.batches.state_dict(),
            "rng": {
                "python": random.getstate(),
                "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            for opt, key in ((self.engine.opt_g, "opt_g"), (self.engine.opt_d, "opt_d")):
                _load_optimizer(opt, state[key])
            for name, reg in self.regularizers.items():
                reg.load_state_dict(state["regularizers"].get(name, {}))
            self.engine.batches.load_state_dict(state["batches"])
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise CheckpointError(f"{source} does not fit this run's networks: {first}") from None
        rng = state["rng"]
        random.setstate(_as_python_state(rng["python"]))
        np.random.set_state((rng["numpy"][0], rng["numpy"][1].numpy().astype(np.uint32), *rng["numpy"][2:]))
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = int(state["step"])

    def save_checkpoint(self) -> Path:
        path = ckpt.checkpoint_path(self.run_dir, self.step)
        ckpt.save_atomic(self.state_dict(), path)
        ckpt.prune(self.run_dir, self.plan.config.keep_checkpoints)
        return path

    # -- sampling ----------------------------------------------------------------

    @property
    def sampler(self) -> nn.Module:
        """The generator to sample and evaluate with: an EMA copy if a regularizer keeps one."""
        for reg in self.regularizers.values():
            replacement = reg.sampling_generator()
            if replacement is not None:
                return replacement
        return self.generator

    @torch.no_grad()
    def generate(self, n: int, latents: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """``n`` samples on the CPU, with G in eval mode (BatchNorm running statistics).

        Conditional runs draw labels uniformly unless ``labels`` are given.
        """
        generator = self.sampler
        was_training = generator.training
        generator.eval()
        try:
            chunks = []
            for start in range(0, n, 1024):
                size = min(1024, n - start)
                z = latents[start : start + size] if latents is not None else self.engine.latents(size)
                if self.plan.config.conditional:
                    y = labels[start : start + size] if labels is not None else torch.randint(
                        self.dataset.num_classes, (size,), device=self.device
                    )
                    chunks.append(generator(z, y).float().cpu())
                else:
                    chunks.append(generator(z).float().cpu())
            return torch.cat(chunks)
        finally:
            generator.train(was_training)

    def save_samples(self, name: str) -> Path:
        path = self.run_dir / name
        # Fixed latents: no draw from the training RNG stream (exact resume), and
        # successive grids show the same latents as training goes on.
        samples = self.generate(len(self.fixed_latents), self.fixed_latents, self.fixed_labels)
        columns = self.dataset.num_classes if self.fixed_labels is not None else None
        save_samples(samples, path, self.dataset.info, columns=columns)
        return path

    def evaluate(self) -> dict[str, float]:
        results: dict[str, float] = {}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.plan.config.seed + 2)
            for chosen in self.plan.metrics:
                metric = chosen.component.build(chosen.options, self.ctx)
                values = metric.compute(self.generate, self.dataset)
                results.update({f"{chosen.component.name}/{k}": float(v) for k, v in values.items()})
        return results


def _load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load optimizer state, keeping the learning rate's type (float, or a device tensor)."""
    kinds = [group["lr"] for group in opt.param_groups]
    opt.load_state_dict(state)
    for group, before in zip(opt.param_groups, kinds, strict=True):
        if isinstance(before, Tensor):
            group["lr"] = torch.as_tensor(group["lr"], dtype=before.dtype, device=before.device)
        else:
            group["lr"] = float(group["lr"])


def _as_python_state(value: Any) -> tuple[Any, ...]:
    version, internal, gauss = value
    return version, tuple(internal), gauss


@contextmanager
def _stop_on_signals() -> Iterator[dict[str, int]]:
    """Turn the first SIGINT/SIGTERM into a request to stop after the current step."""
    requested: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum: int, frame: Any) -> None:
        requested["signal"] = signum
        signal.signal(signum, previous[signum])  # a second signal acts at once

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def train(
    config: RunConfig | None,
    *,
    resume: Path | None = None,
    overrides: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
    live: bool | None = None,
    quiet: bool = False,
) -> RunResult:
    """Train the run ``config`` describes, or continue the one in ``resume``.

    When resuming, the run keeps its saved configuration; ``overrides`` may
    change only ``steps`` (to train longer) and ``device``.
    """
    plugins = plugins or get_plugins()
    notes: list[str] = []
    if resume is not None:
        path, state, notes = ckpt.latest_loadable(resume)
        saved = json.loads(state["config"])
        config = RunConfig.model_validate({**saved, **(overrides or {}), "out": str(resume)})
    elif config is None:
        raise ConfigError("nothing to train: give a configuration or a run directory to resume")
    plan = resolve(config, plugins.registry)
    run_dir = plan.config.out or default_run_dir(plan.config)
    if resume is None and run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} is not empty; choose another --out or --resume it")
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = Plan(**{**plan.__dict__, "config": plan.config.model_copy(update={"out": run_dir})})
    run = Run(plan, plugins, run_dir)
    if resume is not None:
        run.load_state_dict(state, path)
        if run.step >= plan.config.steps:
            raise ConfigError(f"{run_dir} already holds {run.step} steps; pass --steps N > {run.step} to train on")
        _forget_records_after(run_dir / "metrics.jsonl", run.step)
    (run_dir / "config.json").write_text(plan.config.model_dump_json(indent=2) + "\n")
    return _loop(run, live=live, quiet=quiet, notes=notes)


def _loop(run: Run, *, live: bool | None, quiet: bool, notes: list[str]) -> RunResult:
    config = run.plan.config
    hook = run.plugins.hook
    context = RunContext(
        config, run.run_dir, run.device, run.step, run.generator, run.discriminator, run.dataset
    )
    start_step = run.step
    # On the CPU a check costs nothing, so every step is checked; on an accelerator
    # the check rides on the sync that logging does anyway.
    check_every = 1 if run.device.type == "cpu" else config.log_every
    log = MetricsLog(run.run_dir / "metrics.jsonl")
    view = ProgressView(config.steps, run.step, live=live, quiet=quiet)

    def warn(text: str) -> None:
        view.message(f"warning: {text}")
        log.write({"step": run.step, "event": "warning", "message": text})

    context.warn = warn
    for note in notes:
        view.message(f"skipped a checkpoint: {note}")
    view.message(f"training on {run.device}; {run.fast.describe()}")
    hook.ganforge_train_start(run=context)
    sums: dict[str, Tensor] = {}
    counted, window_start = 0, time.perf_counter()
    checkpoint: Path | None = None
    try:
        with _stop_on_signals() as stop:
            while run.step < config.steps and not stop:
                stats = run.engine.step(run.step)
                run.step += 1
                for key, value in stats.items():
                    sums[key] = sums[key] + value if key in sums else value.to(torch.float32, copy=True)
                counted += 1
                if run.step % check_every == 0 or run.step == config.steps:
                    _check_finite(run, start_step)
                if run.step % config.log_every == 0 or run.step == config.steps:
                    averaged = _read(sums, counted)
                    elapsed = time.perf_counter() - window_start
                    averaged["img/s"] = counted * run.engine.schedule.d_steps * config.batch_size / elapsed
                    log.write({"step": run.step, **averaged})
                    view.update(run.step, averaged)
                    hook.ganforge_step_end(run=context, step=run.step, stats=averaged)
                    sums, counted, window_start = {}, 0, time.perf_counter()
                if config.sample_every and run.step % config.sample_every == 0:
                    run.save_samples(f"samples-{run.step:08d}.png")
                if config.checkpoint_every and run.step % config.checkpoint_every == 0:
                    checkpoint = _checkpoint(run, context)
            if stop:
                checkpoint = _checkpoint(run, context)
                signum = stop["signal"]
                name = signal.Signals(signum).name
                raise Interrupted(
                    f"stopped by {name} at step {run.step}; checkpoint {checkpoint}; "
                    f"continue with: ganforge run --resume {run.run_dir}",
                    exit_code=128 + signum,
                )
        if checkpoint is None or checkpoint != ckpt.checkpoint_path(run.run_dir, run.step):
            checkpoint = _checkpoint(run, context)
        samples = run.save_samples("samples.png")
        results = run.evaluate()
        if results:
            log.write({"step": run.step, "event": "eval", **results})
            (run.run_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        hook.ganforge_train_end(run=context, step=run.step, results=results)
        return RunResult(run.run_dir, run.step, results, checkpoint, samples)
    finally:
        view.close()
        log.close()


def _forget_records_after(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint being resumed: those steps will run again."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if _record_step(line) <= step]
    path.write_text("".join(line + "\n" for line in kept))


def _record_step(line: str) -> float:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")  # a line torn by a crash: drop it


def _checkpoint(run: Run, context: RunContext) -> Path:
    _check_finite(run, context.start_step)
    _check_weights(run)
    path = run.save_checkpoint()
    run.plugins.hook.ganforge_checkpoint_saved(run=context, step=run.step, path=path)
    return path


def _read(sums: dict[str, Tensor], count: int) -> dict[str, float]:
    if not sums:
        return {}
    keys = list(sums)
    values = torch.stack([sums[k] for k in keys]).div(count).tolist()  # one host sync
    return dict(zip(keys, values, strict=True))


def _check_weights(run: Run) -> None:
    """Never checkpoint a non-finite weight (one host sync, at checkpoint time only)."""
    named = [(f"G.{n}", p) for n, p in run.generator.named_parameters()]
    named += [(f"D.{n}", p) for n, p in run.discriminator.named_parameters()]
    finite = torch.stack([torch.isfinite(p).all() for _, p in named]).tolist()
    bad = [name for (name, _), ok in zip(named, finite, strict=True) if not ok]
    if bad:
        raise TrainingDiverged(
            f"weight {bad[0]} became NaN or infinite by step {run.step}; it was not checkpointed. "
            "Lower the learning rates or add spectral-norm"
        )


def _check_finite(run: Run, start_step: int) -> None:
    failure = run.engine.failure(start_step)
    if failure is None:
        return
    step, phase = failure
    kept = ckpt.list_checkpoints(run.run_dir)
    where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was written"
    raise TrainingDiverged(
        f"the {phase} loss became NaN or infinite in the {phase} phase of step {step}; {where}. "
        f"Likely cause: learning rates too high for this loss (lr_g {run.plan.config.lr_g}, "
        f"lr_d {run.plan.config.lr_d}) or an unbounded critic; lower them or add spectral-norm"
    )
