"""The ``ganforge`` command line. Torch is imported only inside commands that train."""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ganforge_core.errors import GanforgeError

app = typer.Typer(
    name="ganforge",
    help="Train GANs from interchangeable, plugin-provided components.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# CLI flag -> RunConfig field, so validation errors name the flag the user typed.
FLAGS = {
    "generator": "--gen",
    "discriminator": "--disc",
    "loss": "--loss",
    "regularizers": "--reg",
    "scheduler": "--sched",
    "dataset": "--data",
    "metrics": "--metric",
    "conditional": "--conditional",
    "steps": "--steps",
    "batch_size": "--batch-size",
    "lr_g": "--lr-g",
    "lr_d": "--lr-d",
    "betas": "--betas",
    "seed": "--seed",
    "device": "--device",
    "out": "--out",
    "log_every": "--log-every",
    "sample_every": "--sample-every",
    "checkpoint_every": "--checkpoint-every",
    "keep_checkpoints": "--keep-checkpoints",
    "precision": "--precision",
    "cuda_graph": "--cuda-graph",
    "channels_last": "--channels-last",
    "fused_adam": "--fused-adam",
    "cudnn_benchmark": "--cudnn-benchmark",
}
COMPONENT_HELP = "NAME or NAME:key=value,... (see 'ganforge plugins')"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn user-facing errors into one line on stderr and their exit status."""
    from pydantic import ValidationError

    try:
        yield
    except GanforgeError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except ValidationError as exc:
        raise _fail(_explain_validation(exc)) from None
    except OSError as exc:  # a full disk, a read-only directory: the environment, not a bug
        where = f" ({exc.filename})" if exc.filename else ""
        raise _fail(f"{exc.strerror or exc}{where}", 1) from None


def _explain_validation(exc: Any) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        flag = FLAGS.get(loc[0], loc[0]) if loc else "config"
        where = " ".join([flag, *loc[1:]])
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown setting '{'.'.join(loc)}'; valid: {', '.join(FLAGS)}")
        else:
            parts.append(f"{where}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(parts)


def _warn_about_plugins() -> None:
    from ganforge_core.plugins import get_plugins

    for problem in get_plugins().registry.problems:
        typer.echo(f"warning: {problem}", err=True)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise _fail(f"config file {path} is not UTF-8 text") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(f"config file {path} is not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _fail(f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise _fail(f"config file {path} must hold a table of settings")
    return data


@app.command()
def run(
    gen: Annotated[str | None, typer.Option("--gen", help=f"Generator: {COMPONENT_HELP}. [default: dcgan]")] = None,
    disc: Annotated[
        str | None, typer.Option("--disc", help="Discriminator. [default: the generator's namesake]")
    ] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="Loss. [default: non-saturating]")] = None,
    reg: Annotated[list[str] | None, typer.Option("--reg", help="Regularizer; repeat for several.")] = None,
    sched: Annotated[str | None, typer.Option("--sched", help="Schedule. [default: constant]")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Dataset. [default: mnist-5k]")] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Metric at the end; repeat. [default: all that fit]")
    ] = None,
    conditional: Annotated[
        bool | None, typer.Option("--conditional", help="Class-conditional G and D on a labelled dataset.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="G steps to train. [default: 1500]")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Real samples per D step. [default: 64]")] = None,
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
    config: Annotated[
        Path | None, typer.Option("--config", help="A JSON or TOML file of settings; flags override it.")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this directory from its last checkpoint.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Train a GAN and write a run directory: config.json, metrics.jsonl, samples, checkpoints."""
    given = {
        "generator": gen,
        "discriminator": disc,
        "loss": loss,
        "regularizers": reg or None,
        "scheduler": sched,
        "dataset": data,
        "metrics": metric or None,
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
        "precision": precision,
        "cuda_graph": cuda_graph,
        "channels_last": channels_last,
        "fused_adam": fused_adam,
        "cudnn_benchmark": cudnn_benchmark,
    }
    given = {key: value for key, value in given.items() if value is not None}
    with _user_errors():
        from ganforge_core.config import RunConfig

        if resume is not None:
            changed = sorted(FLAGS[k] for k in given if k not in {"steps", "device"})
            if changed or config is not None:
                raise _fail(f"--resume continues a run as it was configured; drop {', '.join(changed) or '--config'}")
            run_config = None
        else:
            run_config = RunConfig.model_validate({**(_read_config_file(config) if config else {}), **given})
        _warn_about_plugins()
        from ganforge_core.session import train

        result = train(run_config, resume=resume, overrides=given if resume else None, quiet=quiet)
    summary = "  ".join(f"{k}={v:.4g}" for k, v in result.results.items())
    typer.echo(f"done: {result.step} steps in {result.run_dir}; samples {result.samples}")
    if summary:
        typer.echo(f"results: {summary}")


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print the Markdown catalogue.")] = False,
) -> None:
    """List installed plugins, the components each provides, and their options."""
    from ganforge_core.catalogue import catalogue, markdown, print_catalogue

    with _user_errors():
        data = catalogue()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    elif as_markdown:
        typer.echo(markdown(data), nl=False)
    else:
        print_catalogue(data)


@app.command()
def sample(
    source: Annotated[Path, typer.Argument(help="A run directory (its newest checkpoint) or a checkpoint file.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of samples.")] = 64,
    out: Annotated[Path, typer.Option(help="A .png grid (or 2D scatter), or raw samples as .pt or .npy.")] = Path(
        "samples.png"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the latents.")] = 0,
    label: Annotated[int | None, typer.Option(help="Class of every sample (conditional runs).")] = None,
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA generator when the run keeps one.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Draw samples from a trained generator."""
    if out.suffix not in {".png", ".pt", ".npy"}:
        raise _fail(f"--out must end in .png, .pt or .npy, not '{out.suffix or out.name}'")
    with _user_errors():
        from ganforge_core.plugins import get_plugins
        from ganforge_core.run import load_run

        run = load_run(source, get_plugins(), device)
        samples = run.draw(n, seed=seed, label=label, ema=ema)
        run.write_samples(samples, out)
    typer.echo(f"wrote {n} samples to {out}")


@app.command("eval")
def evaluate(
    source: Annotated[Path, typer.Argument(help="A run directory (its newest checkpoint) or a checkpoint file.")],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Metric; repeat. [default: the run's metrics]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Evaluate a trained generator; writes eval.json beside the checkpoint."""
    with _user_errors():
        from ganforge_core.plugins import get_plugins
        from ganforge_core.run import load_run

        run = load_run(source, get_plugins(), device)
        results = run.evaluate(metric)
        path = run.run_dir / "eval.json"
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    if as_json:
        typer.echo(json.dumps(results, indent=2, sort_keys=True))
    elif not results:
        typer.echo("no metric applies to this run's dataset (see 'ganforge plugins')")
    else:
        for name, value in results.items():
            typer.echo(f"{name:32s} {value:.6g}")


def main() -> None:
    """Entry point: usage errors become one line, like every other error."""
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        # Click's exceptions (typer may vendor click) share this interface.
        if not (callable(getattr(exc, "format_message", None)) and hasattr(exc, "exit_code")):
            raise
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(0)
        command = ctx.command_path if ctx is not None else "ganforge"
        typer.echo(f"error: {exc.format_message()} (see '{command} --help')", err=True)
        code = exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
