"""``ganforge bench``: train K seeds of a named recipe on ring-8, grid-25 or Stacked MNIST; report
mean ± standard error beside the published PacGAN and VEEGAN numbers (``docs/benchmarks.md``).

Each dataset's protocol is a ``Benchmark``: its metric (``mixture-modes`` on 2,500
samples, or ``stacked-modes`` on 26,000), the columns shown, the published rows and
the recipes. Recipes are plain data: RunConfig fields. ``preset`` is the shipped
preset named like the dataset (``ganforge_core/presets/``), offered where one is
shipped and then the default; ``gan``, ``pacgan2`` and ``pacgan4`` are PacGAN's 2D
setups, ``dcgan`` and ``pacdcgan2`` its Stacked MNIST rows on ganforge's dcgan
networks. Each seed's run goes to ``<runs>/bench-<dataset>-<recipe>/seed-<K>/``.
Seeds train in parallel worker processes (``--jobs``): the 2D nets with one torch
thread each, conv nets with the cores shared out; on a GPU one seed at a time.

A finished seed leaves ``bench.json`` (its row and the RunConfig fields it was trained
with) in its directory. Running the bench again reuses every finished seed whose fields
match and trains only the rest, so ``--seeds 10`` after ``--seeds 3`` trains seeds 3-9,
and an interrupted bench continues; an unfinished seed is trained again from scratch.
A finished seed trained with other settings is an error unless ``--fresh``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ganforge_core import ConfigError

# PacGAN's 2D architecture and optimiser (Lin et al. 2018): mlp G (4x400, BatchNorm) and
# maxout D (3x200, 5 pieces), Adam lr 1e-4, betas (0.8, 0.999), batch 100, non-saturating loss.
PACGAN_2D: dict[str, Any] = {
    "generator": "mlp",
    "discriminator": "mlp",
    "loss": "non-saturating",
    "lr_g": 1e-4,
    "lr_d": 1e-4,
    "betas": (0.8, 0.999),
    "batch_size": 100,
}
# Stacked MNIST: ganforge's dcgan G and D (not VEEGAN's exact networks) with DCGAN's own
# optimiser (Radford et al. 2016): Adam lr 2e-4, betas (0.5, 0.999), batch 64, non-saturating loss.
DCGAN: dict[str, Any] = {
    "generator": "dcgan",
    "discriminator": "dcgan",
    "loss": "non-saturating",
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "betas": (0.5, 0.999),
    "batch_size": 64,
}
PRESET = "preset"  # the recipe read from ganforge_core/presets/<dataset>.toml

# Published rows (mean, standard error) per column; None where the paper gives no error or no value.
Row = dict[str, tuple[float, float | None] | None]


@dataclass(frozen=True)
class Column:
    key: str  # the metric's result name
    title: str
    scale: float = 1.0  # shown as value x scale (HQ as a percentage)
    digits: int = 1  # decimals of the published rows; ours get one more where the bar is in hundredths
    ours_digits: int | None = None


@dataclass(frozen=True)
class Benchmark:
    """One dataset's protocol: the metric and its columns, the recipes, the published rows."""

    dataset: str
    metric: str
    columns: tuple[Column, ...]
    recipes: dict[str, dict[str, Any]]  # name -> RunConfig fields; PRESET: the shipped preset
    default_steps: int  # for the named recipes; a preset names its own steps
    anchors: dict[str, Row]
    device: str  # "cpu" for the 2D nets (one thread is fastest); "auto" for images


MIXTURE_COLUMNS = (
    Column("modes", "modes"),
    Column("hq", "HQ %", scale=100.0),
    Column("reverse-kl", "rev-KL", digits=2, ours_digits=3),
)
MIXTURE_RECIPES: dict[str, dict[str, Any]] = {
    PRESET: {},
    "gan": PACGAN_2D,
    "pacgan2": {**PACGAN_2D, "regularizers": ["packing:m=2"]},
    "pacgan4": {**PACGAN_2D, "regularizers": ["packing:m=4"]},
}
STACKED_RECIPES: dict[str, dict[str, Any]] = {
    PRESET: {},  # offered once presets/stacked-mnist.toml is shipped; pacdcgan2 is the default until then
    "pacdcgan2": {**DCGAN, "regularizers": ["packing:m=2"]},
    "dcgan": DCGAN,
}


def mixture(dataset: str, anchors: dict[str, Row]) -> Benchmark:
    """PacGAN's 2D protocol on ``dataset``: 6,000 steps for its recipes, on the CPU."""
    return Benchmark(dataset, "mixture-modes", MIXTURE_COLUMNS, MIXTURE_RECIPES, 6000, anchors, device="cpu")


# From ../shared/ANCHORS.md: PacGAN Table 1 (10 trials) and VEEGAN Table 1 (5 runs, means only);
# Stacked MNIST: VEEGAN Table 2, PacGAN Table 2 (VEEGAN's architecture) and Table 3 (D = 1/4 G).
BENCHMARKS: dict[str, Benchmark] = {
    "ring-8": mixture(
        "ring-8",
        {
            "PacGAN paper: GAN": {"modes": (6.3, 0.5), "hq": (98.2, 0.2), "reverse-kl": (0.45, 0.09)},
            "PacGAN paper: ALI": {"modes": (6.6, 0.3), "hq": (97.6, 0.4), "reverse-kl": (0.36, 0.04)},
            "PacGAN paper: PacGAN2": {"modes": (7.9, 0.1), "hq": (95.6, 2.0), "reverse-kl": (0.07, 0.03)},
            "PacGAN paper: PacGAN3": {"modes": (7.8, 0.1), "hq": (97.7, 0.3), "reverse-kl": (0.10, 0.02)},
            "PacGAN paper: PacGAN4": {"modes": (7.8, 0.1), "hq": (95.9, 1.4), "reverse-kl": (0.07, 0.02)},
            "VEEGAN paper: GAN": {"modes": (1.0, None), "hq": (99.3, None), "reverse-kl": None},
            "VEEGAN paper: Unrolled GAN": {"modes": (7.6, None), "hq": (35.6, None), "reverse-kl": None},
            "VEEGAN paper: VEEGAN": {"modes": (8.0, None), "hq": (52.9, None), "reverse-kl": None},
        },
    ),
    "grid-25": mixture(
        "grid-25",
        {
            "PacGAN paper: GAN": {"modes": (17.3, 0.8), "hq": (94.8, 0.7), "reverse-kl": (0.70, 0.07)},
            "PacGAN paper: ALI": {"modes": (24.1, 0.4), "hq": (95.7, 0.6), "reverse-kl": (0.14, 0.03)},
            "PacGAN paper: PacGAN2": {"modes": (23.8, 0.7), "hq": (91.3, 0.8), "reverse-kl": (0.13, 0.04)},
            "PacGAN paper: PacGAN3": {"modes": (24.6, 0.4), "hq": (94.2, 0.4), "reverse-kl": (0.06, 0.02)},
            "PacGAN paper: PacGAN4": {"modes": (24.8, 0.2), "hq": (93.6, 0.6), "reverse-kl": (0.04, 0.01)},
            "VEEGAN paper: GAN": {"modes": (3.3, None), "hq": (0.5, None), "reverse-kl": None},
            "VEEGAN paper: Unrolled GAN": {"modes": (23.6, None), "hq": (16.0, None), "reverse-kl": None},
            "VEEGAN paper: VEEGAN": {"modes": (24.6, None), "hq": (40.0, None), "reverse-kl": None},
        },
    ),
    "stacked-mnist": Benchmark(
        "stacked-mnist",
        "stacked-modes",
        (Column("modes", "modes"), Column("kl", "KL", digits=2, ours_digits=3)),
        STACKED_RECIPES,
        10000,
        {
            "PacGAN paper: DCGAN": {"modes": (78.9, 6.5), "kl": (4.50, None)},
            "PacGAN paper: PacDCGAN2": {"modes": (1000.0, None), "kl": (0.06, None)},
            "PacGAN paper, D = 1/4 G: DCGAN": {"modes": (78.5, None), "kl": (5.21, None)},
            "PacGAN paper, D = 1/4 G: PacDCGAN4": {"modes": (667.4, None), "kl": (1.81, None)},
            "VEEGAN paper: DCGAN": {"modes": (99.0, None), "kl": (3.4, None)},
            "VEEGAN paper: Unrolled GAN": {"modes": (48.7, None), "kl": (4.32, None)},
            "VEEGAN paper: VEEGAN": {"modes": (150.0, None), "kl": (2.95, None)},
        },
        device="auto",
    ),
}
DATASETS = tuple(BENCHMARKS)


def benchmark(dataset: str) -> Benchmark:
    if dataset not in BENCHMARKS:
        raise ConfigError(f"bench runs on {', '.join(DATASETS)}, not '{dataset}'")
    return BENCHMARKS[dataset]


def recipes(dataset: str) -> list[str]:
    """The recipes on ``dataset``: ``preset`` only where a preset named like it is shipped."""
    from ganforge_core import presets

    return [name for name in benchmark(dataset).recipes if name != PRESET or dataset in presets.names()]


def default_recipe(dataset: str) -> str:
    """``preset`` where one named like the dataset is shipped, else the first recipe listed."""
    return recipes(dataset)[0]


def check_recipe(recipe: str, dataset: str) -> None:
    valid = recipes(dataset)
    if recipe not in valid:
        raise ConfigError(f"unknown recipe '{recipe}' for {dataset}; valid: {', '.join(valid)}")


def recipe_fields(recipe: str, dataset: str) -> dict[str, Any]:
    """The recipe's RunConfig fields on ``dataset`` (a preset's are read from its file)."""
    spec = benchmark(dataset)
    check_recipe(recipe, dataset)
    if recipe == PRESET:
        from ganforge_core import presets

        return presets.load(dataset)
    return {**spec.recipes[recipe], "steps": spec.default_steps}


def recipe_config(recipe: str, dataset: str, seed: int, steps: int | None, out: Path) -> dict[str, Any]:
    """The RunConfig fields of one seed's run (``steps=None``: the recipe's own)."""
    fields = recipe_fields(recipe, dataset)
    spec = benchmark(dataset)
    return {
        **fields,
        "dataset": dataset,
        "metrics": [spec.metric],
        "steps": steps or fields["steps"],
        "seed": seed,
        "device": spec.device,
        "out": str(out),
        "sample_every": 0,
        "checkpoint_every": 0,
        "keep_checkpoints": 1,
    }


def mean_and_error(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (sample std / sqrt(K)); no error for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, statistics.stdev(values) / math.sqrt(len(values))


def summarise(per_seed: list[dict[str, float]], spec: Benchmark) -> Row:
    return {
        c.key: mean_and_error([row[f"{spec.metric}/{c.key}"] * c.scale for row in per_seed]) for c in spec.columns
    }


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_jobs(seeds: int, dataset: str) -> int:
    """One worker per CPU core this process may use, at most one per seed; one at a time on a GPU."""
    if benchmark(dataset).device != "cpu":
        import torch

        if torch.cuda.is_available():
            return 1
    return max(1, min(seeds, cpu_cores()))


def threads_per_seed(dataset: str, jobs: int) -> int:
    """Torch threads of each seed's run: one for the tiny 2D nets, the cores shared out for conv nets."""
    return 1 if benchmark(dataset).device == "cpu" else max(1, cpu_cores() // jobs)


def run_bench(
    dataset: str,
    recipe: str,
    seeds: int,
    steps: int | None,
    runs: Path,
    fresh: bool = False,
    quiet: bool = True,
    progress: Any = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Train ``seeds`` runs (seeds 0..K-1) and return the report (``--json``'s object)."""
    spec = benchmark(dataset)
    fields = recipe_fields(recipe, dataset)
    steps = steps or fields["steps"]
    root = runs / f"bench-{dataset}-{recipe}"
    configs = [recipe_config(recipe, dataset, seed, steps, root / f"seed-{seed}") for seed in range(seeds)]
    reused, to_train = [], []
    for seed_fields in configs:  # (not `fields`: the report's recipe_config is the recipe's)
        out = Path(seed_fields["out"])
        row = None if fresh else finished_row(out, seed_fields)
        if row is not None:
            reused.append(row)
            continue
        if out.exists():
            shutil.rmtree(out)
        to_train.append(seed_fields)
    started = time.perf_counter()
    for row in reused:
        if progress is not None:
            progress({**row, "reused": True})
    threads = threads_per_seed(dataset, jobs)
    trained = _train_seeds(to_train, quiet, progress, jobs, threads)
    per_seed = sorted(reused + trained, key=lambda row: row["seed"])
    summary = summarise(per_seed, spec)
    return {
        "dataset": dataset,
        "recipe": recipe,
        "recipe_config": fields,
        "steps": steps,
        "seeds": seeds,
        "jobs": jobs,
        "reused": [row["seed"] for row in reused],
        "runs": str(root),
        "seconds": round(time.perf_counter() - started, 1),
        "per_seed": per_seed,
        "mean": {k: v[0] for k, v in summary.items() if v is not None},
        "stderr": {k: v[1] for k, v in summary.items() if v is not None},
        "metric": spec.metric,
        "anchors": {
            name: {k: (list(v) if v else None) for k, v in row.items()} for name, row in spec.anchors.items()
        },
    }


RECORD = "bench.json"  # in a seed's run directory once it has finished: its row and fields


def finished_row(out: Path, fields: dict[str, Any]) -> dict[str, Any] | None:
    """A finished seed's row, if ``out`` holds one trained with ``fields``; None if unfinished.

    Raises ``ConfigError`` for a finished seed trained with other fields: replacing it is
    the user's call (``--fresh``), not ours.
    """
    try:
        record = json.loads((out / RECORD).read_text())
        row, trained_with = record["row"], record["fields"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if trained_with != _comparable(fields):  # stored already comparable
        raise ConfigError(
            f"{out} was trained with other settings ({_difference(trained_with, fields)}); "
            "pass --fresh to replace bench runs, or --runs-dir NEW"
        )
    return row


def _comparable(fields: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(fields, default=str))  # tuples -> lists, paths -> str


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    old, new = _comparable(old), _comparable(new)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in keys[:3])


def train_one(fields: dict[str, Any], quiet: bool = True, threads: int = 1) -> dict[str, Any]:
    """Train one seed's run with ``threads`` torch threads; its results, seed and seconds.

    The 2D networks are tiny: one thread is faster, and immune to a busy machine's
    oversubscription (two spinning OpenMP threads on a shared 2-core CPU ran 50x slower).
    """
    import torch

    from ganforge_core import train

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        result = train(fields, quiet=quiet)
    finally:
        torch.set_num_threads(previous)
    row = {**result.results, "seed": fields["seed"], "seconds": round(time.perf_counter() - started, 1)}
    record = Path(fields["out"]) / RECORD
    temporary = record.with_name(record.name + ".tmp")
    temporary.write_text(json.dumps({"row": row, "fields": _comparable(fields)}, indent=2))
    os.replace(temporary, record)  # a seed is finished once this file exists, and never half-written
    return row


def _train_seeds(
    configs: list[dict[str, Any]], quiet: bool, progress: Any, jobs: int, threads: int = 1
) -> list[dict[str, Any]]:
    if jobs <= 1:
        rows = []
        for fields in configs:
            rows.append(train_one(fields, quiet, threads))
            if progress is not None:
                progress(rows[-1])
        return rows
    # Seeds are independent runs: worker processes (spawned, so no torch state is forked).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending = {pool.submit(train_one, fields, True, threads) for fields in configs}
        rows = []
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                rows.append(future.result())  # a worker's error is raised here, as it would be in one process
                if progress is not None:
                    progress(rows[-1])
    return sorted(rows, key=lambda row: row["seed"])


def _cell(value: tuple[float, float | None] | None, digits: int) -> str:
    if value is None:
        return "-"
    mean, error = value
    return f"{mean:.{digits}f}" + (f"±{error:.{digits}f}" if error is not None else "")


def table(report: dict[str, Any]) -> str:
    """The Markdown table: our row, then the published ones."""
    spec = benchmark(report["dataset"])
    ours: Row = {c.key: (report["mean"][c.key], report["stderr"][c.key]) for c in spec.columns}
    label = f"ganforge {report['recipe']} ({report['seeds']} seeds, {report['steps']} steps)"
    rows = [(label, ours), *spec.anchors.items()]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"| {'method'.ljust(width)} | " + " | ".join(c.title for c in spec.columns) + " |",
        f"|{'-' * (width + 2)}|" + "|".join("---" for _ in spec.columns) + "|",
    ]
    for index, (name, row) in enumerate(rows):
        # Published KLs have 2 decimals; ours gets 3, since the bars are in the hundredths.
        cells = [
            _cell(row.get(c.key), c.ours_digits if index == 0 and c.ours_digits is not None else c.digits)
            for c in spec.columns
        ]
        lines.append(f"| {name.ljust(width)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _recipes_help() -> str:
    return "; ".join(f"{name}: {', '.join(recipes(name))}" for name in BENCHMARKS)


def command(
    dataset: Annotated[str, typer.Argument(help=f"{', '.join(DATASETS)}.")],
    seeds: Annotated[int, typer.Option(min=1, help="Seeds to train (0..K-1).")] = 3,
    steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="G steps per seed. [default: a preset's own; "
            + ", ".join(f"{name} recipes {spec.default_steps}" for name, spec in BENCHMARKS.items())
            + "]",
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help=f"Recipe; preset is the shipped preset named like the dataset ({_recipes_help()}). "
            "[default: preset, or the first recipe where none is shipped]"
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Seeds trained at once, one process each. [default: one per CPU core; 1 on a GPU]"),
    ] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where bench-<dataset>-<recipe>/seed-K/ go.")] = Path("runs"),
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Retrain every seed; by default finished seeds with the same settings are reused."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Train K seeds of a recipe on ring-8, grid-25 or stacked-mnist; mean ± standard error beside PacGAN and VEEGAN."""
    # A ConfigError raised here is one line: ganforge wraps every plugin command (docs/plugins.md).
    def progress(row: dict[str, Any]) -> None:
        if not as_json:
            spec = BENCHMARKS[dataset]
            values = "  ".join(f"{c.key}={row[f'{spec.metric}/{c.key}']:.4g}" for c in spec.columns)
            reused = "reused, " if row.get("reused") else ""
            typer.echo(f"seed {row['seed']}: {values}  ({reused}{row['seconds']:.0f} s)", err=True)

    chosen = recipe or default_recipe(dataset)
    check_recipe(chosen, dataset)
    report = run_bench(
        dataset,
        chosen,
        seeds,
        steps,
        runs_dir,
        fresh=fresh,
        progress=progress,
        jobs=jobs or default_jobs(seeds, dataset),
    )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(table(report))
        typer.echo(
            f"{seeds} seeds x {report['steps']} steps in {report['seconds']:.0f} s ({report['jobs']} at a time"
            + (f"; {len(report['reused'])} finished seeds reused" if report["reused"] else "")
            + "); "
            f"runs in {report['runs']}"
        )
