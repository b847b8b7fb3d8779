"""``ganforge plugins``, ``ganforge sample`` and ``ganforge eval``: look at what is installed and trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ganforge_core.commands.common import SOURCE_HELP, fail, user_errors, warn
from ganforge_core.config import SEED_LIMIT


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print the Markdown catalogue.")] = False,
) -> None:
    """List installed plugins, the components each provides, and their options."""
    from ganforge_core.catalogue import catalogue, markdown, print_catalogue

    with user_errors():
        data = catalogue()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    elif as_markdown:
        typer.echo(markdown(data), nl=False)
    else:
        print_catalogue(data)


def sample(
    source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
    n: Annotated[
        int | None,
        typer.Option("--n", min=1, help="Number of samples, or of rows with --interpolate. [default: 64; 8 rows]"),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="A .png picture (the dataset's own, else an image grid, a 2D scatter, or histograms for "
            "other data), or raw samples as .pt or .npy."
        ),
    ] = Path("samples.png"),
    seed: Annotated[int, typer.Option(help="Seed of the latents (32-bit, as for run).")] = 0,
    label: Annotated[int | None, typer.Option(help="Class of every sample (conditional runs).")] = None,
    interpolate: Annotated[
        int | None,
        typer.Option(
            "--interpolate",
            metavar="K",
            help="Rows of K samples along a spherical path between two latents (the first and last "
            "columns are samples 1..N and N+1..2N of --n 2N). .pt/.npy hold [N, K, *data shape]; "
            "for 2D data the .png draws the paths over the modes, for other non-images a heat-map.",
        ),
    ] = None,
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA generator when the run keeps one.")] = True,
    truncation: Annotated[
        float | None,
        typer.Option(
            "--truncation",
            metavar="PSI",
            help="The truncation trick, for generators of the trait 'truncation' (stylegan2): each style pulled "
            "toward the average, w_avg + PSI * (w - w_avg); 1 is none, lower trades variety for quality. "
            "[default: the run's own]",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Draw samples from a trained generator, or interpolations between latents (--interpolate K)."""
    if out.suffix not in {".png", ".pt", ".npy"}:
        raise fail(f"--out must end in .png, .pt or .npy, not '{out.suffix or out.name}'")
    if not 0 <= seed < SEED_LIMIT:
        raise fail(f"--seed must be at least 0 and below 2**32, as for run; got {seed}")
    if interpolate is not None and interpolate < 2:
        raise fail(f"--interpolate must be at least 2 (the two ends of each row), got {interpolate}")
    with user_errors():
        from ganforge_core.trained import load_trained

        trained = load_trained(source, device=device, warn=warn)
        if interpolate is None:
            n = 64 if n is None else n
            samples = trained.draw(n, seed=seed, label=label, ema=ema, truncation=truncation)
        else:
            n = 8 if n is None else n
            samples = trained.interpolate(n, interpolate, seed=seed, label=label, ema=ema, truncation=truncation)
        trained.write_samples(samples, out)
    if interpolate is None:
        typer.echo(f"wrote {n} samples to {out}")
    else:
        typer.echo(f"wrote {n} interpolations of {interpolate} steps to {out} (shape {list(samples.shape)})")


def evaluate(
    source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Metric as NAME[:key=value,...]; repeat. [default: the run's metrics]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (shown only on a terminal).")] = False,
) -> None:
    """Evaluate a trained generator; writes eval.json beside the checkpoint."""
    from ganforge_core import waiting

    with user_errors(), waiting.shown(waiting.visible() and not quiet):
        from ganforge_core.trained import load_trained

        trained = load_trained(source, device=device, warn=warn)
        results = trained.evaluate(metric)  # loads the dataset: metrics compare against it
        path = trained.run_dir / "eval.json"
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    if as_json:
        typer.echo(json.dumps(results, indent=2, sort_keys=True))
    elif not results:
        typer.echo("no metric applies to this run's dataset (see 'ganforge plugins')")
    else:
        for name, value in results.items():
            typer.echo(f"{name:32s} {value:.6g}")
