"""A run from start to finish: resolve, build, loop over steps, record, checkpoint, evaluate.

The step itself lives in :mod:`ganforge_core.engine` and the run's objects in
:mod:`ganforge_core.run`; this module owns the loop around them: the run
directory, the progress view, ``metrics.jsonl``, sample grids, checkpoints,
signals, the non-finite checks and the lifecycle hooks.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge_core import checkpoint as ckpt
from ganforge_core import distributed, resuming, waiting
from ganforge_core.components import Logger, RunContext
from ganforge_core.config import Chosen, Plan, RunConfig, resolve
from ganforge_core.errors import (
    BuildError,
    ConfigError,
    ContractError,
    GanforgeError,
    TrainingDiverged,
    WriteError,
)
from ganforge_core.interruption import StopRequest, culprit, run_owners, stop_on_signals, what_happened
from ganforge_core.plugins import Plugins, get_plugins
from ganforge_core.reporting import MetricsLog, ProgressView, plot_losses, write_config_files
from ganforge_core.run import Run

__all__ = ["Interrupted", "Run", "RunContext", "RunResult", "train"]

class Interrupted(GanforgeError):
    """Training stopped by SIGINT or SIGTERM after checkpointing."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunResult:
    run_dir: Path
    step: int
    results: dict[str, float]
    checkpoint: Path
    samples: Path


def default_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.generator.name}-{config.loss.name}-{config.dataset.name}"


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
    change only ``steps`` (to train longer) and ``device``. The waits before and after
    the loop (the dataset, the evaluation) show bars where the live view would show.
    """
    bars = (waiting.visible() if live is None else live) and not quiet and distributed.detect().main
    with waiting.shown(bars):
        return _train(config, resume=resume, overrides=overrides, plugins=plugins, live=live, quiet=quiet)


def _train(
    config: RunConfig | None,
    *,
    resume: Path | None,
    overrides: dict[str, Any] | None,
    plugins: Plugins | None,
    live: bool | None,
    quiet: bool,
) -> RunResult:
    plugins = plugins or get_plugins()
    world = distributed.detect()  # torchrun's environment; one process without it
    notes: list[str] = []
    restart = distributed.restart_count()
    out = None if config is None else config.out
    if resume is None and out is not None and restart and out.is_dir() and ckpt.list_checkpoints(out):
        # torchrun --max-restarts started this command again after a worker failed:
        # continue the run it began in --out from its last checkpoint.
        assert config is not None
        notes.append(f"torchrun restart {restart}: resuming {out} from its last checkpoint")
        length = {"steps": config.steps} if config.epochs is None else {}  # epochs: the saved steps stand
        resume, overrides = out, {**length, "device": config.device}
    if resume is not None:
        first = ckpt.latest_loadable(resume)
        changes = {**(overrides or {}), "out": str(resume)}
        config = resuming.saved_config(first[1], changes)
        resuming.check_config_files(resume, first[0], first[1], overrides or {})
    elif config is None:
        raise ConfigError("nothing to train: give a configuration or a run directory to resume")
    plan = resolve(config, plugins.registry)
    _check_world(world, plan, plugins)
    run_dir = plan.config.out or default_run_dir(plan.config)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; give a directory")
    if resume is None and run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} is not empty; choose another --out or --resume it")
    # Distributed: every rank has checked the directory before this rendezvous; rank 0
    # writes into it only after.
    if world.distributed:
        device = distributed.pick_device(world, plan.config.device)
        world = distributed.start(world, device, plan.config.dist_backend)
    run: Run | None = None
    try:
        if world.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(run_dir)
        plan = Plan(**{**plan.__dict__, "config": plan.config.model_copy(update={"out": run_dir})})
        resumed: Path | None = None  # the checkpoint the run continues from
        if resume is None:
            run = Run(plan, plugins, run_dir, world)
        else:
            run, resumed, passed = resuming.load_run(plan, plugins, world, first, changes)
            notes += passed
            plan = run.plan
            if run.step >= plan.config.steps:
                # All steps trained: a run stopped before its final samples and evaluation
                # (a signal at the last step, a crash in them) finishes them; a finished one refuses.
                if run.step > plan.config.steps or world.any(_finished(run_dir, run.step), run.device):
                    raise ConfigError(
                        f"{run_dir} already holds {run.step} steps; pass --steps N > {run.step} to train on"
                    )
                notes.append(f"all {run.step} steps are trained; writing the final samples and evaluation")
            if world.main:
                _forget_records_after(run_dir / "metrics.jsonl", run.step, drop_eval=run.step >= plan.config.steps)
        if world.main:
            write_config_files(run_dir, run.plan.config)  # the run's: --epochs is steps by now
        return _loop(run, live=live, quiet=quiet, notes=notes, resumed=resumed)
    except Exception as exc:
        if world.distributed and not isinstance(exc, GanforgeError) and distributed.is_peer_failure(exc):
            raise distributed.peer_lost(world, exc, run_dir) from None
        raise
    finally:
        if run is not None:
            run.close()  # the loader's workers stop here, on success, error or Ctrl-C alike
        distributed.stop(world)  # its threads live on: the process ends without finalizing (cli.main)


def _check_world(world: distributed.World, plan: Plan, plugins: Plugins) -> None:
    """Under torchrun: the global batch splits over the ranks, and each rank's share is a
    batch every component accepts (packing's m divides it, BatchNorm gets 2 or more)."""
    if not world.distributed:
        return
    batch = plan.config.batch_size
    distributed.check_batch(world, batch)
    try:
        resolve(plan.config.model_copy(update={"batch_size": world.per_rank(batch)}), plugins.registry)
    except ConfigError as exc:
        raise ConfigError(
            f"each of the {world.size} ranks trains on {world.per_rank(batch)} of the global --batch-size "
            f"{batch}, and that per-rank batch does not fit: {exc}"
        ) from None


class Observers:
    """The lifecycle hooks of one run. A plugin whose hook raises is reported once and
    skipped from then on: an observer's bug must not cost the run."""

    def __init__(self, plugins: Plugins, warn: Callable[[str], None]) -> None:
        self.plugins, self.warn = plugins, warn
        self.failed: set[str] = set()

    def __call__(self, hook_name: str, **kwargs: Any) -> None:
        def report(plugin: str, exc: Exception) -> None:
            self.failed.add(plugin)
            self.warn(f"plugin '{plugin}': {hook_name} raised {exc!r}; its hooks are skipped from now on")

        self.plugins.call_each(hook_name, report, skip=self.failed, **kwargs)


class Loggers:
    """The run's ``--logger`` components. A logger that raises is reported once and dropped:
    like an observer's, a logger's bug must not cost the run (metrics.jsonl has every record)."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.active: list[tuple[str, Logger]] = []

    def start(self, chosen_loggers: Iterable[Chosen], context: RunContext) -> None:
        """Build the loggers; a factory's bug is a warning, a GanforgeError (bad input) stops the run."""
        warn = self.warn
        for chosen in chosen_loggers:
            label = f"plugin '{chosen.component.plugin}': {chosen.component.label}"
            try:
                self.active.append((label, chosen.component.build(chosen.options, context)))
            except BuildError as exc:  # the factory's bug: reported; the run goes on without it
                warn(f"{label} could not start ({exc.__cause__!r}); the run goes on without it")

    def __call__(self, method: str, *args: Any) -> None:
        for entry in list(self.active):
            label, logger = entry
            try:
                getattr(logger, method)(*args)
            except Exception as exc:  # noqa: BLE001 - a logger's failure is reported, not fatal
                self.active.remove(entry)
                self.warn(f"{label}: {method} raised {exc!r}; it logs nothing more")
                _close(label, logger, self.warn)

    def close(self) -> None:
        for label, logger in self.active:
            _close(label, logger, self.warn)
        self.active = []


def _close(label: str, logger: Logger, warn: Callable[[str], None]) -> None:
    try:
        logger.close()
    except Exception as exc:  # noqa: BLE001 - closing is best effort
        warn(f"{label}: close raised {exc!r}")


def _loop(run: Run, *, live: bool | None, quiet: bool, notes: list[str], resumed: Path | None) -> RunResult:
    config = run.plan.config
    context = RunContext(
        config, run.run_dir, run.device, run.step, run.generator, run.discriminator, run.dataset
    )
    start_step = run.step
    # On the CPU a check costs nothing, so every step is checked; on an accelerator
    # the check rides on the sync that logging does anyway.
    check_every = 1 if run.device.type == "cpu" else config.log_every
    world = run.world  # distributed: rank 0 alone logs, shows progress, samples and calls hooks
    log: MetricsLog | _Unlogged = MetricsLog(run.run_dir / "metrics.jsonl") if world.main else _Unlogged()
    view = ProgressView(config.steps, run.step, live=live and world.main, quiet=quiet or not world.main)

    def warn(text: str) -> None:
        view.message(f"warning: {text}")
        log.write({"step": run.step, "event": "warning", "message": text})

    context.warn = warn
    notify = Observers(run.plugins, warn) if world.main else _unobserved
    for note in notes:
        view.message(f"warning: {note}")
    shared = world.describe(config.batch_size)
    length = f"{run.length_note}; " if run.length_note else ""
    data = run.residency.describe()
    view.message(f"training on {run.device}; {data}; {length}{shared + '; ' if shared else ''}{run.fast.describe()}")
    loggers = Loggers(warn)
    counted, window_start = 0, time.perf_counter()
    checkpoint: Path | None = resumed  # the checkpoint of the step the run is at, once written
    mid_step = False  # a step half done: the state in memory is no state to checkpoint

    def save_samples(name: str) -> Path:
        path = run.save_samples(name)
        loggers("samples", run.step, path)
        return path

    def save_checkpoint() -> Path:
        path = _checkpoint(run, context, notify)
        loggers("checkpoint", run.step, path)
        return path

    try:
        with stop_on_signals() as stop:
            try:
                notify("ganforge_train_start", run=context)
                loggers.start(run.plan.loggers if world.main else (), context)  # rank 0 alone logs
                halted = False  # distributed: a stop every rank agreed on
                while run.step < config.steps and not (halted if world.distributed else stop):
                    mid_step = True
                    run.engine.step(run.step)
                    run.step += 1
                    mid_step = False
                    counted += 1
                    if run.step % check_every == 0 or run.step == config.steps:
                        _check_finite(run, start_step)
                        if world.distributed:  # a signal to any rank stops every rank at the same step
                            halted = world.any(bool(stop), run.device)
                    if run.step % config.log_every == 0 or run.step == config.steps:
                        averaged = run.engine.read_stats()
                        if config.on_nan == "skip":
                            averaged.update({f"skipped/{k.lower()}": v for k, v in run.engine.skipped.items()})
                        elapsed = time.perf_counter() - window_start
                        averaged["img/s"] = counted * run.engine.schedule.d_steps * config.batch_size / elapsed
                        averaged.update(_learning_rates(run))
                        log.write({"step": run.step, **averaged})
                        loggers("log", run.step, averaged)
                        view.update(run.step, averaged)
                        notify("ganforge_step_end", run=context, step=run.step, stats=averaged)
                        counted, window_start = 0, time.perf_counter()
                    if config.sample_every and run.step % config.sample_every == 0 and world.main:
                        save_samples(f"samples-{run.step:08d}.png")
                    if config.checkpoint_every and run.step % config.checkpoint_every == 0:
                        checkpoint = view.saved(run.step, save_checkpoint())
                if halted if world.distributed else stop:
                    checkpoint = view.saved(run.step, save_checkpoint())
                    loggers("end", run.step, {})
                    notify("ganforge_train_end", run=context, step=run.step, results={})
                    raise _interrupted(run, stop, checkpoint)
                if checkpoint is None or checkpoint != ckpt.checkpoint_path(run.run_dir, run.step):
                    checkpoint = view.saved(run.step, save_checkpoint())
                if not world.main:
                    return RunResult(run.run_dir, run.step, {}, checkpoint, run.run_dir / "samples.png")
                # The final writes: the last checkpoint is on disk and --resume finishes them,
                # so a signal from here on stops at once.
                stop.at_once = True
                samples = save_samples("samples.png")
                results = run.evaluate()
                if results:
                    log.write({"step": run.step, "event": "eval", **results})
                    (run.run_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
                _plot_losses(run, warn)
                loggers("end", run.step, results)
                notify("ganforge_train_end", run=context, step=run.step, results=results)
                log.write({"step": run.step, "event": "done"})  # what a --resume of this run checks
                return RunResult(run.run_dir, run.step, results, checkpoint, samples)
            except (SystemExit, KeyboardInterrupt) as exc:
                if stop.at_once and stop:  # a signal during the final writes
                    raise _interrupted(run, stop, ckpt.checkpoint_path(run.run_dir, run.step)) from None
                if stop:
                    raise  # a second signal: at once, as the user asked
                raise _plugin_stopped(run, exc, mid_step, loggers.active, context) from None
    finally:
        loggers.close()
        view.close()
        log.close()


def _interrupted(run: Run, stop: StopRequest, checkpoint: Path) -> Interrupted:
    """The one line of a run a signal stopped, with the command that continues it."""
    steps = run.plan.config.steps
    launcher = "torchrun ... " if run.world.distributed else ""
    if run.step < steps:
        where, then = f"at step {run.step}", "continue with"
    else:  # all steps trained: the resume writes the final samples and evaluation
        where, then = f"after the last step ({steps}), before the final samples and evaluation", "finish with"
    return Interrupted(
        f"stopped by {stop.name} {where}; checkpoint {checkpoint}; {then}: {launcher}ganforge run --resume {run.run_dir}",
        exit_code=128 + (stop.signal or signal.SIGTERM),  # a rank the signal did not reach: SIGTERM
    )


def _plugin_stopped(
    run: Run, exc: BaseException, mid_step: bool, loggers: list[tuple[str, Logger]], context: RunContext
) -> ContractError:
    """A plugin's code called sys.exit or raised KeyboardInterrupt: no signal, so no request to stop
    from the user. The run stops all the same, with its last good state checkpointed, in one line
    naming whose code it was."""
    who = culprit(exc, run.plugins, *run_owners(run, loggers))
    path = ckpt.checkpoint_path(run.run_dir, run.step)
    if mid_step:
        when = f"during step {run.step + 1}, which was cut short and not saved"
    else:
        when = f"at step {run.step}"
        # One process alone: the other ranks of a distributed run are inside a collective.
        if run.step > 0 and not run.world.distributed and not path.exists():
            _checkpoint(run, context, _unobserved)  # no more plugin code: one of them just ended the run
    kept = ckpt.list_checkpoints(run.run_dir)
    if kept:
        good = "checkpoint" if kept[-1] == path else "the last good checkpoint is"
        where = f"{good} {kept[-1]}; continue with: ganforge run --resume {run.run_dir}"
    else:
        where = "no checkpoint was written"
    return ContractError(f"{who}: {what_happened(exc)} {when}; a plugin must not end the run: stopped; {where}")


class _Unlogged:
    """metrics.jsonl on the ranks other than 0: nothing is written."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def _unobserved(hook_name: str, **kwargs: Any) -> None:
    """Lifecycle hooks on the ranks other than 0: not called (loggers would write twice)."""


def _learning_rates(run: Run) -> dict[str, float]:
    """The current learning rates of G and D (after the schedule), for the log and the view."""
    return {
        f"lr/{name}": float(opt.param_groups[0]["lr"])
        for name, opt in (("g", run.engine.opt_g), ("d", run.engine.opt_d))
    }


def _plot_losses(run: Run, warn: Callable[[str], None]) -> None:
    """losses.png from metrics.jsonl; never fatal."""
    try:
        plot_losses(run.run_dir / "metrics.jsonl", run.run_dir / "losses.png")
    except Exception as exc:  # noqa: BLE001 - a picture must not cost a finished run
        warn(f"could not draw losses.png ({exc!r})")


def _forget_records_after(path: Path, step: int, *, drop_eval: bool = False) -> None:
    """Drop log lines past the checkpoint being resumed: those steps will run again. With
    ``drop_eval``, the final writes run again too: an evaluation of ``step`` goes as well."""
    if not path.exists():
        return
    kept = [
        line for line in path.read_text().splitlines()
        if _record_step(line) <= step and not (drop_eval and _record_event(line) == "eval")
    ]  # fmt: skip
    path.write_text("".join(line + "\n" for line in kept))


def _finished(run_dir: Path, step: int) -> bool:
    """Whether metrics.jsonl says the run finished at ``step``: its final writes are all done."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return any(_record_event(line) == "done" and _record_step(line) == step for line in lines)


def _record_event(line: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("event") if isinstance(record, dict) else None


def _record_step(line: str) -> float:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")  # a line torn by a crash: drop it


def _checkpoint(run: Run, context: RunContext, notify: Callable[..., None]) -> Path:
    _check_finite(run, context.start_step)
    _check_weights(run)
    state = run.state_dict()  # distributed: every rank takes part (their random streams)

    def write() -> Path:
        try:
            return run.save_checkpoint(state)
        except OSError as exc:
            kept = ckpt.list_checkpoints(run.run_dir)
            where = f"the last good checkpoint {kept[-1]} is intact" if kept else "no checkpoint was kept"
            raise WriteError(
                f"cannot write checkpoint {ckpt.checkpoint_path(run.run_dir, run.step)}: "
                f"{exc.strerror or exc}; {where}"
            ) from None

    # Rank 0 writes; the others wait until the file is complete (or share its error).
    path = run.world.on_main(write) or ckpt.checkpoint_path(run.run_dir, run.step)
    notify("ganforge_checkpoint_saved", run=context, step=run.step, path=path)
    return path


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
