"""``ganforge codewords RUN``: the codewords a trained run's generator makes, as a table.

Importing this module imports neither torch nor numpy (``ganforge --help`` loads
it); the command imports them when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ganforge_core.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

DATA_TRAIT = "hamming-7"


def table(counts: Tensor) -> str:
    """The lines ``ganforge codewords`` prints for ``[17]`` codeword counts."""
    from ganforge_hamming.code import NOT_A_CODEWORD, WORDS, spelling

    n = int(counts.sum())
    lines = [f"{'#':>2s}  {'codeword':11s} {'count':>7s} {'share':>7s}"]
    for index in range(WORDS):
        count = int(counts[index])
        lines.append(f"{index:2d}  {spelling(index):11s} {count:7d} {count / n:7.4f}")
    none = int(counts[NOT_A_CODEWORD])
    lines.append(f"{'':2s}  {'no codeword':11s} {none:7d} {none / n:7.4f}")
    seen = sum(1 for c in counts[:WORDS].tolist() if c)
    lines.append(f"valid: {(n - none) / n:.4f} ({n - none} of {n} samples); codewords seen: {seen} of {WORDS}")
    return "\n".join(lines)


def codewords(
    run: Annotated[Path, typer.Argument(help="A run directory trained on hamming-7, or one of its checkpoints.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Samples to draw.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the latents.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Count the Hamming(7,4) codewords among samples of a run trained on hamming-7 (plugin hamming)."""
    # ganforge prints a ConfigError (any GanforgeError) raised by a plugin command as one line.
    if not run.exists():
        raise ConfigError(f"no run directory or checkpoint at {run}")
    from ganforge_core import load_trained

    from ganforge_hamming.code import codeword_counts

    trained = load_trained(run, device=device)  # the generator only: no optimizer, no dataset
    dataset = trained.plan.dataset
    if DATA_TRAIT not in dataset.traits:
        raise ConfigError(
            f"ganforge codewords needs a run trained on hamming-7; {run} trained on '{dataset.component.name}'"
        )
    counts = codeword_counts(trained.draw(n, seed))
    typer.echo(table(counts))
