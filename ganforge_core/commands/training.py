"""``ganforge run`` and ``ganforge config show``: one set of flags, one way to a RunConfig.

:func:`run_flags` declares every flag that shapes a run, once. :func:`takes_run_flags`
grafts those flags onto a command's own parameters and hands the command a
:class:`Flags`, whose :meth:`Flags.config` turns them into a :class:`RunConfig`
(``--config`` file first, flags over it).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ganforge_core.commands.common import (
    COMPONENT_HELP,
    FLAGS,
    fail,
    not_main_rank,
    read_config_file,
    user_errors,
    warn_about_plugins,
)
from ganforge_core.presets import names as preset_names

if TYPE_CHECKING:
    from ganforge_core.config import RunConfig


def run_flags(
    gen: Annotated[str | None, typer.Option("--gen", help=f"Generator: {COMPONENT_HELP}. [default: dcgan]")] = None,
    disc: Annotated[
        str | None, typer.Option("--disc", help="Discriminator. [default: the generator's namesake]")
    ] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="Loss. [default: non-saturating]")] = None,
    reg: Annotated[list[str] | None, typer.Option("--reg", help="Regularizer; repeat for several.")] = None,
    sched: Annotated[str | None, typer.Option("--sched", help="Schedule. [default: constant]")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Dataset. [default: mnist-5k]")] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Metric at the end; repeat; 'none' for none. [default: all that fit]")
    ] = None,
    conditional: Annotated[
        bool | None, typer.Option("--conditional", help="Class-conditional G and D on a labelled dataset.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="G steps to train. [default: 1500]")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Real samples per D step; under torchrun the global batch, split over the ranks. [default: 64]"),
    ] = None,
    lr_g: Annotated[float | None, typer.Option(help="G learning rate. [default: the loss's]")] = None,
    lr_d: Annotated[float | None, typer.Option(help="D learning rate. [default: the loss's]")] = None,
    betas: Annotated[str | None, typer.Option(help="Adam betas as B1,B2. [default: the loss's]")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed. [default: 0]")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N. [default: auto]")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory. [default: runs/<time>-<gen>-<loss>-<data>]")] = None,
    log_every: Annotated[int | None, typer.Option(help="Steps between logged statistics. [default: 50]")] = None,
    sample_every: Annotated[int | None, typer.Option(help="Steps between sample grids. [default: 500]")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Steps between checkpoints. [default: 500]")] = None,
    keep_checkpoints: Annotated[int | None, typer.Option(help="Checkpoints to keep. [default: 2]")] = None,
    on_nan: Annotated[
        str | None,
        typer.Option(help="A non-finite loss: stop (keep the last good checkpoint) or skip the update. [default: stop]"),
    ] = None,
    logger: Annotated[
        list[str] | None,
        typer.Option(
            "--logger",
            help="Also log to this logger, NAME or NAME:key=value,... (tensorboard, or one a plugin adds; "
            "see 'ganforge plugins'). Repeat or comma-separate; metrics.jsonl is always written.",
        ),
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="auto (bf16 on CUDA, fp32 elsewhere), fp32 or bf16. [default: auto]")
    ] = None,
    cuda_graph: Annotated[
        bool | None, typer.Option("--cuda-graph/--no-cuda-graph", help="Capture the step in a CUDA graph. [default: on]")
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option("--channels-last/--no-channels-last", help="Channels-last images on CUDA. [default: on]"),
    ] = None,
    fused_adam: Annotated[
        bool | None, typer.Option("--fused-adam/--no-fused-adam", help="Fused Adam on CUDA. [default: on]")
    ] = None,
    cudnn_benchmark: Annotated[
        bool | None,
        typer.Option("--cudnn-benchmark/--no-cudnn-benchmark", help="cuDNN autotuning on CUDA. [default: on]"),
    ] = None,
    sync_batchnorm: Annotated[
        bool | None,
        typer.Option(
            "--sync-batchnorm/--no-sync-batchnorm",
            help="Under torchrun: BatchNorm over the global batch (SyncBatchNorm, CUDA only). [default: off]",
        ),
    ] = None,
    dist_backend: Annotated[
        str | None,
        typer.Option(help="Under torchrun: auto (nccl on CUDA, gloo on CPU), nccl or gloo. [default: auto]"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="A JSON or TOML file of settings; flags override it.")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help=f"Start from a shipped preset ({', '.join(preset_names())}); --config and flags override it.",
        ),
    ] = None,
) -> Flags:
    """The flags that shape a run; the only place they are declared."""
    given = {
        "generator": gen,
        "discriminator": disc,
        "loss": loss,
        "regularizers": reg or None,
        "scheduler": sched,
        "dataset": data,
        "metrics": [] if metric == ["none"] else (metric or None),
        "conditional": conditional,
        "steps": steps,
        "batch_size": batch_size,
        "lr_g": lr_g,
        "lr_d": lr_d,
        "betas": betas.split(",") if betas else None,
        "seed": seed,
        "device": device,
        "out": out,
        "log_every": log_every,
        "sample_every": sample_every,
        "checkpoint_every": checkpoint_every,
        "keep_checkpoints": keep_checkpoints,
        "on_nan": on_nan,
        "loggers": logger or None,
        "precision": precision,
        "cuda_graph": cuda_graph,
        "channels_last": channels_last,
        "fused_adam": fused_adam,
        "cudnn_benchmark": cudnn_benchmark,
        "sync_batchnorm": sync_batchnorm,
        "dist_backend": dist_backend,
    }
    return Flags({key: value for key, value in given.items() if value is not None}, config, preset)


@dataclass(frozen=True)
class Flags:
    """The run flags a user gave: RunConfig fields (``given``) and the ``--config`` file."""

    given: dict[str, Any]
    config_file: Path | None
    preset: str | None = None

    def config(self) -> RunConfig:
        """The RunConfig these flags describe: the preset, the config file over it, then the flags."""
        from ganforge_core import presets
        from ganforge_core.config import RunConfig

        from_preset = presets.load(self.preset) if self.preset else {}
        from_file = read_config_file(self.config_file) if self.config_file else {}
        return RunConfig.model_validate({**from_preset, **from_file, **self.given})


_RUN_FLAGS = inspect.signature(run_flags, eval_str=True).parameters


def takes_run_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command(flags: Flags, **own)`` every run flag, placed before its own options."""
    own = [p for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "flags"]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        flag_values = {name: kwargs.pop(name) for name in _RUN_FLAGS}
        command(run_flags(**flag_values), **kwargs)

    parameters = [*_RUN_FLAGS.values(), *own]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


@takes_run_flags
def run(
    flags: Flags,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this directory from its last checkpoint.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Train a GAN and write a run directory: config.json/.toml, metrics.jsonl, samples, losses.png, checkpoints."""
    given = flags.given
    with user_errors():
        if resume is not None:
            changed = sorted(FLAGS[k] for k in given if k not in {"steps", "device", "dist_backend"})
            if flags.preset is not None:
                changed.append("--preset")
            if changed or flags.config_file is not None:
                raise fail(f"--resume continues a run as it was configured; drop {', '.join(changed) or '--config'}")
            run_config = None
        else:
            run_config = flags.config()
        warn_about_plugins()
        from ganforge_core.session import train

        result = train(run_config, resume=resume, overrides=given if resume else None, quiet=quiet)
    if not_main_rank():
        return  # rank 0 reports
    summary = "  ".join(f"{k}={v:.4g}" for k, v in result.results.items())
    typer.echo(f"done: {result.step} steps in {result.run_dir}; samples {result.samples}")
    if summary:
        typer.echo(f"results: {summary}")


@takes_run_flags
def config_show(
    flags: Flags,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the resolved configuration of a run (every default filled in) without training.

    Takes the same flags as 'ganforge run'. The output, saved to a file, is a valid
    --config. 'out' is left out unless given: a run picks runs/<time>-... when it starts.
    """
    with user_errors():
        from ganforge_core.config import resolve
        from ganforge_core.plugins import get_plugins
        from ganforge_core.tomlwriter import dumps

        warn_about_plugins()
        resolved = resolve(flags.config(), get_plugins().registry).config
    if as_json:
        typer.echo(resolved.model_dump_json(indent=2))
    else:
        typer.echo(dumps(resolved.model_dump(mode="json")), nl=False)
