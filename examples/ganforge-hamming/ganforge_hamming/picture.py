"""The picture of ``hamming-7`` samples: the first ones bit by bit, and how often each codeword occurs.

Left, the first ``SHOWN`` samples as rows of seven cells, white for a positive
value (bit 1) and black otherwise, with a red cross after each row that is no
codeword. Right, a bar per codeword (its seven bits under it) with the fraction
of all the samples given that spell it, a red bar for those that spell none, and
a dashed line at 1/16, where every bar of the data stands. Drawn on matplotlib's
Agg canvas (no pyplot, so a program's backend is left alone); the PNG's title
is ``MARKER``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from ganforge_hamming.code import LENGTH, NOT_A_CODEWORD, WORDS, classify, codeword_counts, spelling

SHOWN = 48
MARKER = "ganforge-hamming: codewords"
CODEWORD_BLUE = (0.15, 0.35, 0.85)
NONE_RED = (0.85, 0.1, 0.1)


def render_codewords(
    samples: Tensor, path: Path, *, info: Mapping[str, Any], columns: int | None = None
) -> None:
    """Write the picture of ``samples`` ([N, 7], on the CPU) to ``path``; ``columns`` (for grids) is unused."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    flat = samples.reshape(len(samples), -1).float()
    counts = codeword_counts(flat)
    total = max(len(flat), 1)
    figure = Figure(figsize=(11, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    cells, bars = figure.subplots(1, 2, width_ratios=(1, 3))

    shown = flat[:SHOWN]
    cells.imshow((shown > 0).float().numpy(), cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    cells.set_xticks(range(LENGTH), [str(i + 1) for i in range(LENGTH)])
    cells.set_xticks([i + 0.5 for i in range(LENGTH - 1)], minor=True)
    cells.set_yticks([i + 0.5 for i in range(len(shown) - 1)], minor=True)
    cells.grid(which="minor", color=(0.5, 0.5, 0.5), linewidth=0.5)
    cells.tick_params(which="minor", length=0)
    cells.set_xlabel("bit")
    cells.set_ylabel("sample")
    rows = (classify(shown) == NOT_A_CODEWORD).nonzero().flatten().tolist()
    cells.scatter([LENGTH - 0.1] * len(rows), rows, marker="x", color=NONE_RED, clip_on=False, zorder=3)
    cells.set_xlim(-0.5, LENGTH + 0.3)
    cells.set_title(f"first {len(shown)} samples\nwhite +, black -; x: no codeword", fontsize=10)

    share = (counts.double() / total).tolist()
    bars.bar(range(WORDS + 1), share, color=[CODEWORD_BLUE] * WORDS + [NONE_RED])
    bars.axhline(1 / WORDS, color=(0.4, 0.4, 0.4), linestyle="--", linewidth=1, label="1/16: each codeword in the data")
    labels = [spelling(i) for i in range(WORDS)] + ["no codeword"]
    bars.set_xticks(range(WORDS + 1), labels, rotation=90, fontfamily="monospace")
    bars.set_xlim(-0.6, WORDS + 0.6)
    bars.set_ylim(0, max(max(share), 1 / WORDS) * 1.15)
    bars.set_ylabel("fraction of samples")
    bars.legend(loc="upper left")
    seen = sum(1 for c in counts[:WORDS].tolist() if c)
    valid = 1 - share[NOT_A_CODEWORD]
    bars.set_title(f"{len(flat)} samples: {valid:.1%} codewords, {seen} of 16 seen", fontsize=10)
    figure.savefig(path, dpi=100, metadata={"Title": MARKER, "Software": None})
