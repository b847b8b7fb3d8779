"""The default pictures of samples: image grids, 2D scatters, and a summary for any other shape.

:func:`ganforge_core.reporting.render_samples` picks one of these by the data's
shape when the dataset registers no renderer of its own. Everything is drawn on
matplotlib's Agg canvas directly: no pyplot, no GUI, and no change to the
backend of a program that imported ganforge. matplotlib (and numpy) are imported
here only, when a picture is drawn, so ``ganforge --help`` stays light.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

IMAGE_CHANNELS = (1, 3)  # grey or RGB: what a PNG grid can show
SAMPLES_BLUE = (0.15, 0.35, 0.85)
REAL_GREY = (0.62, 0.62, 0.62)
MODES_RED = (0.9, 0.1, 0.1)
# One colour per interpolation path (matplotlib's tab10, less red: red marks the modes).
PATH_COLOURS = (
    (0.12, 0.47, 0.71),
    (1.0, 0.5, 0.05),
    (0.17, 0.63, 0.17),
    (0.58, 0.4, 0.74),
    (0.55, 0.34, 0.29),
    (0.89, 0.47, 0.76),
    (0.5, 0.5, 0.5),
    (0.74, 0.74, 0.13),
)
FEW_DIMENSIONS = 16  # up to this many: a histogram per dimension and the values written out
FIRST_ROWS = 16  # samples shown value by value


def is_image(shape: tuple[int, ...]) -> bool:
    """``[C, H, W]`` with one or three channels: drawn as a grid of pictures."""
    return len(shape) == 3 and shape[0] in IMAGE_CHANNELS


def is_points(shape: tuple[int, ...]) -> bool:
    """``[2]``: drawn as a scatter."""
    return tuple(shape) == (2,)


def _figure(width: int, height: int) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / 100, height / 100), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> None:
    # No "Software" stamp: the same samples give the same file whatever matplotlib drew it.
    figure.savefig(path, dpi=100, metadata={"Software": None})


def grid(samples: Tensor, path: Path, columns: int | None = None) -> None:
    """Images ``[N, C, H, W]`` in ``[-1, 1]`` as a PNG grid, ``columns`` per row (default: a square)."""
    from torchvision.utils import save_image

    per_row = columns or max(1, int(math.sqrt(samples.shape[0])))
    save_image(samples, path, nrow=per_row, normalize=True, value_range=(-1, 1), padding=2, pad_value=1.0)


def _square_frame(reference: Tensor) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y limits of one square frame around ``reference`` ([M, 2]) with a 15% margin each side.

    Non-finite points (a diverged generator's) are left out; with none left, the frame is [-1, 1]².
    """
    reference = reference[torch.isfinite(reference).all(1)]
    if not len(reference):
        reference = torch.tensor([[-1.0, -1.0], [1.0, 1.0]]) / 1.3
    low, high = reference.min(0).values, reference.max(0).values
    half = float((high - low).max().clamp(min=1e-6)) * 1.3 / 2
    centre = (high + low) / 2
    return (float(centre[0]) - half, float(centre[0]) + half), (float(centre[1]) - half, float(centre[1]) + half)


def _modes(means: Any) -> Tensor | None:
    """``info["means"]`` as a CPU tensor [M, 2] (a plugin may keep it anywhere, or as a list)."""
    return None if means is None else torch.as_tensor(means).detach().float().cpu().reshape(-1, 2)


def _points_axes(figure: Any, reference: Tensor, means: Tensor | None) -> Any:
    axes = figure.add_subplot()
    xlim, ylim = _square_frame(reference)
    axes.set_xlim(*xlim)
    axes.set_ylim(*ylim)
    axes.set_aspect("equal")
    axes.grid(alpha=0.25)
    if means is not None:
        axes.scatter(means[:, 0], means[:, 1], marker="+", s=90, color=MODES_RED, linewidths=2, label="modes", zorder=3)
    return axes


def scatter(
    points: Tensor, path: Path, *, means: Tensor | None = None, real: Tensor | None = None, side: int = 512
) -> None:
    """2D samples ``[N, 2]`` (blue) with axes, over the true modes (red crosses) when the data has them.

    ``real`` points, when given, are drawn in grey beneath. The frame is fixed by
    the modes (else the real points, else the samples), so successive pictures
    of a run are comparable; the title counts the samples that fall outside it.
    """
    means = _modes(means)
    reference = means if means is not None else real if real is not None else points
    figure = _figure(side, side)
    axes = _points_axes(figure, reference, means)
    if real is not None:
        axes.scatter(real[:, 0], real[:, 1], s=3, color=REAL_GREY, linewidths=0, label=f"real ({len(real):,})")
    axes.scatter(points[:, 0], points[:, 1], s=3, color=SAMPLES_BLUE, linewidths=0, label=f"samples ({len(points):,})")
    (x0, x1), (y0, y1) = axes.get_xlim(), axes.get_ylim()
    inside = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
    outside = len(points) - int(inside.sum())
    axes.set_title(f"{len(points):,} samples" + (f", {outside:,} outside the frame" if outside else ""))
    legend = axes.legend(loc="upper right", fontsize="small", framealpha=0.9)
    for handle in legend.legend_handles:  # the legend's markers at one readable size
        handle.set_sizes([30])
    _save(figure, path)


def paths(walks: Tensor, path: Path, *, means: Tensor | None = None, side: int = 512) -> None:
    """Latent interpolations of a 2D generator (``walks``: [rows, K, 2]) with axes, over the modes.

    Each row is a line in its own colour through its K points; its first point
    is a black square and its last a square in the row's colour. Red crosses mark
    the modes; the frame is the one :func:`scatter` uses.
    """
    means = _modes(means)
    figure = _figure(side, side)
    axes = _points_axes(figure, means if means is not None else walks.reshape(-1, 2), means)
    for index, walk in enumerate(walks):
        colour = PATH_COLOURS[index % len(PATH_COLOURS)]
        axes.plot(walk[:, 0], walk[:, 1], "-o", color=colour, linewidth=1.2, markersize=3)
        axes.plot(walk[-1:, 0], walk[-1:, 1], "s", color=colour, markersize=8)
        axes.plot(walk[:1, 0], walk[:1, 1], "s", color="black", markersize=8, label="start" if index == 0 else None)
    axes.set_title(f"{len(walks)} interpolations of {walks.shape[1]} steps")
    axes.legend(loc="upper right", fontsize="small", framealpha=0.9)
    _save(figure, path)


def summary(samples: Tensor, path: Path, *, real: Tensor | None = None) -> None:
    """Samples of any other shape (vectors, sequences, ``[C, L]``...), flattened to D values each.

    What a user asks of such samples is "does each coordinate have the data's
    distribution?" and "what does one sample look like?". So: with at most
    :data:`FEW_DIMENSIONS` values, a histogram per dimension (real data, when
    given, as a grey outline over the same bins), and the first
    :data:`FIRST_ROWS` samples as a table of coloured, written-out values. With
    more, where a panel per dimension no longer fits: each dimension's mean and
    spread along the dimension index (a sequence's profile), the first samples
    as a heat-map (one row each), and the histogram of all values pooled.
    """
    flat = samples.reshape(len(samples), -1)
    ref = None if real is None else real.reshape(len(real), -1)
    low, high = _value_range(flat if ref is None else torch.cat([flat, ref]))
    dims = flat.shape[1]
    shape = "x".join(str(s) for s in samples.shape[1:]) or "scalar"
    if dims <= FEW_DIMENSIONS:
        columns = min(dims, 4)
        rows = math.ceil(dims / columns)
        figure = _figure(900, 170 * rows + 60 + 24 * min(FIRST_ROWS, len(flat)) + 80)
        panels, table = figure.subfigures(2, 1, height_ratios=[170 * rows + 60, 24 * min(FIRST_ROWS, len(flat)) + 80])
        axes = panels.subplots(rows, columns, squeeze=False, sharex=True)
        for dim, ax in enumerate(axes.flat):
            if dim >= dims:
                ax.set_visible(False)
                continue
            _histogram(ax, flat[:, dim], None if ref is None else ref[:, dim], low, high)
            ax.set_title(f"dimension {dim}", fontsize="medium")
        panels.suptitle(_counts(len(flat), ref, f"samples of shape [{shape}]"))
        _values_table(table.subplots(), flat[:FIRST_ROWS], low, high, written=True)
    else:
        figure = _figure(900, 900)
        top, middle, bottom = figure.subplots(3, 1, height_ratios=[1, 1.3, 1])
        _profile(top, flat, ref)
        _values_table(middle, flat[:FIRST_ROWS * 2], low, high, written=False)
        _histogram(bottom, flat.flatten(), None if ref is None else ref.flatten(), low, high)
        bottom.set_title("all values pooled", fontsize="medium")
        figure.suptitle(_counts(len(flat), ref, f"samples of shape [{shape}], {dims} values each"))
    _save(figure, path)


def _counts(n: int, real: Tensor | None, what: str) -> str:
    return f"{n:,} {what}" + (f"; grey: {len(real):,} real" if real is not None else "")


def _value_range(values: Tensor) -> tuple[float, float]:
    """The finite values' range (a diverged generator's inf and NaN are left out)."""
    finite = values[torch.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (-1.0, 1.0)
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5
    return low, high


def _histogram(axes: Any, values: Tensor, real: Tensor | None, low: float, high: float) -> None:
    bins = torch.linspace(low, high, 41).numpy()
    values = values[torch.isfinite(values)]
    axes.hist(values.numpy(), bins=bins, color=SAMPLES_BLUE, alpha=0.75, label="samples")
    if real is not None:
        # Scaled to the samples' count, so the two shapes compare whatever the sizes.
        weights = torch.full((len(real),), len(values) / len(real)).numpy()
        axes.hist(real.numpy(), bins=bins, weights=weights, histtype="step", color="0.35", linewidth=1.2, label="real")
    axes.tick_params(labelsize="small")
    axes.grid(alpha=0.25)


def _profile(axes: Any, flat: Tensor, real: Tensor | None) -> None:
    index = torch.arange(flat.shape[1]).numpy()
    for values, colour, label in ((real, "0.35", "real"), (flat, SAMPLES_BLUE, "samples")):
        if values is None:
            continue
        mean = values.mean(0)
        spread = values.std(0) if len(values) > 1 else torch.zeros_like(mean)
        axes.plot(index, mean.numpy(), color=colour, linewidth=1.2, label=f"{label}: mean")
        axes.fill_between(index, (mean - spread).numpy(), (mean + spread).numpy(), color=colour, alpha=0.2)
    axes.set_title("each dimension's mean ± standard deviation", fontsize="medium")
    axes.set_xlabel("dimension")
    axes.grid(alpha=0.25)
    axes.legend(fontsize="small")


def _values_table(axes: Any, rows: Tensor, low: float, high: float, *, written: bool) -> None:
    image = axes.imshow(rows.numpy(), cmap="viridis", vmin=low, vmax=high, aspect="auto", interpolation="nearest")
    axes.set_title(f"the first {len(rows)} samples, one per row", fontsize="medium")
    axes.set_xlabel("dimension")
    axes.set_ylabel("sample")
    if written:
        axes.set_xticks(range(rows.shape[1]))
        axes.set_yticks(range(len(rows)))
        middle = (low + high) / 2
        for row, values in enumerate(rows.tolist()):
            for dim, value in enumerate(values):
                colour = "white" if value < middle else "black"  # viridis is dark at the bottom; nan: black
                axes.text(dim, row, f"{value:.2g}", ha="center", va="center", fontsize="x-small", color=colour)
    axes.figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01)


def walk_heatmap(walks: Tensor, path: Path) -> None:
    """Interpolations of any other shape (``walks``: [rows, K, *shape]) as one heat-map.

    Each path is a band of D lines (its flattened values, dimension 0 on top)
    across K columns (its steps, from one sample to the other), so a value that
    changes smoothly along the path shows as a smooth colour ramp. Bands are
    separated by a blank line.
    """
    import numpy as np

    rows, steps = walks.shape[:2]
    flat = walks.reshape(rows, steps, -1).transpose(1, 2)  # [rows, D, K]
    dims = flat.shape[1]
    image = np.full((rows * (dims + 1) - 1, steps), np.nan)
    for row in range(rows):
        image[row * (dims + 1) : row * (dims + 1) + dims] = flat[row].numpy()
    low, high = _value_range(flat)
    figure = _figure(700, min(1400, max(360, 140 + 9 * len(image))))
    axes = figure.add_subplot()
    drawn = axes.imshow(image, cmap="viridis", vmin=low, vmax=high, aspect="auto", interpolation="nearest")
    axes.set_yticks([row * (dims + 1) + (dims - 1) / 2 for row in range(rows)], [f"path {row}" for row in range(rows)])
    axes.set_xticks(range(steps))
    axes.set_xlabel("step along the path")
    axes.set_title(f"{rows} interpolations of {steps} steps; each band: dimensions 0-{dims - 1}, top to bottom")
    figure.colorbar(drawn, ax=axes, fraction=0.04, pad=0.01)
    _save(figure, path)
