"""What a run shows and records: progress, metrics.jsonl and sample pictures."""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl``; each line is flushed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def format_stats(stats: dict[str, float]) -> str:
    shown = ("loss/d", "loss/g", "d/real", "d/fake", "loss/gp", "img/s", "lr/g", "lr/d")
    return "  ".join(f"{k}={stats[k]:.3g}" for k in shown if k in stats)


# What the live view shows of the logged statistics, and as what.
LIVE_STATS = (("loss/d", "loss D"), ("loss/g", "G"), ("d/real", "D(x)"), ("d/fake", "D(G(z))"), ("loss/gp", "gp"))


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressView:
    """What a run shows while it trains.

    On a terminal (``live``): a rich progress bar with ETA, and under it the latest
    logged D and G losses, D(x), D(G(z)), img/s, both learning rates and the last
    checkpoint; warnings (the health monitors' included) print above it. Elsewhere:
    one plain line per log interval, with the learning rates and the last checkpoint.
    ``quiet`` shows nothing. ``console``: the rich console of the live view (tests capture it).
    """

    def __init__(
        self, total: int, start: int, live: bool | None = None, quiet: bool = False, console: Any = None
    ) -> None:
        self.total, self.start, self.quiet = total, start, quiet
        self.live = (sys.stderr.isatty() if live is None else live) and not quiet
        self._started = time.perf_counter()
        self._bar: Any = None
        self.stats: dict[str, float] = {}
        self.last_checkpoint: tuple[int, Path] | None = None
        if self.live:
            self._bar = _live_progress(self.status, console)
            self._task = self._bar.add_task("train", total=total, completed=start)
            self._bar.start()

    def update(self, step: int, stats: dict[str, float]) -> None:
        self.stats = dict(stats)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=step)
            return
        elapsed = time.perf_counter() - self._started
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        saved = f"  checkpoint {self.last_checkpoint[0]}" if self.last_checkpoint else ""
        print(
            f"step {step}/{self.total}  {format_stats(stats)}{saved}  eta {_duration(eta)}",
            file=sys.stderr,
            flush=True,
        )

    def saved(self, step: int, path: Path) -> Path:
        """Note the checkpoint just written (shown from now on); returns ``path``."""
        self.last_checkpoint = (step, path)
        if self._bar is not None:
            self._bar.refresh()
        return path

    def status(self) -> str:
        """The live view's lines under the bar."""
        stats = self.stats
        numbers = "  ".join(f"{label} {stats[key]:.3g}" for key, label in LIVE_STATS if key in stats)
        if "img/s" in stats:
            numbers += f"  {stats['img/s']:,.0f} img/s"
        rates = f"lr G {stats['lr/g']:.3g}  D {stats['lr/d']:.3g}" if "lr/g" in stats and "lr/d" in stats else "lr -"
        if self.last_checkpoint is None:
            saved = "no checkpoint yet"
        else:
            saved = f"checkpoint step {self.last_checkpoint[0]}: {self.last_checkpoint[1]}"
        return f"  {numbers or 'no statistics logged yet'}\n  {rates}  |  {saved}"

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        elif not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _live_progress(status: Any, console: Any) -> Any:
    """A rich Progress that renders ``status()`` (plain text) under its bar."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class LiveProgress(Progress):
        def get_renderables(self) -> Any:
            yield self.make_tasks_table(self.tasks)
            yield Text(status(), no_wrap=True, overflow="ellipsis")

    return LiveProgress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def save_samples(samples: Tensor, path: Path, data_info: dict[str, Any], columns: int | None = None) -> None:
    """A PNG grid for images; a scatter of the points over the true modes for 2D data."""
    from torchvision.utils import save_image

    samples = samples.detach().float().cpu()
    if samples.dim() == 4:
        per_row = columns or max(1, int(math.sqrt(samples.shape[0])))
        save_image(samples, path, nrow=per_row, normalize=True, value_range=(-1, 1), padding=2, pad_value=1.0)
    elif samples.dim() == 2 and samples.shape[1] == 2:
        save_image(scatter_image(samples, data_info.get("means")), path)
    else:
        raise ValueError(f"cannot draw samples of shape {list(samples.shape)}")


def scatter_image(points: Tensor, means: Tensor | None, side: int = 512) -> Tensor:
    """Rasterise 2D points (blue) and the true means (red crosses) into a [3, side, side] image."""
    reference = means if means is not None else points
    low, high = reference.min(0).values, reference.max(0).values
    span = (high - low).max().clamp(min=1e-6)
    centre = (high + low) / 2
    scale = (side - 1) / (span * 1.3)

    def pixels(p: Tensor) -> tuple[Tensor, Tensor]:
        xy = ((p - centre) * scale + (side - 1) / 2).round().long()
        inside = (xy >= 0).all(1) & (xy < side).all(1)
        xy = xy[inside]
        return side - 1 - xy[:, 1], xy[:, 0]

    image = torch.ones(3, side, side)
    rows, cols = pixels(points)
    for dr in (0, 1):
        for dc in (0, 1):
            r, c = (rows + dr).clamp(max=side - 1), (cols + dc).clamp(max=side - 1)
            image[:, r, c] = torch.tensor([0.15, 0.35, 0.85])[:, None]
    if means is not None:
        rows, cols = pixels(means)
        for d in range(-5, 6):
            for r, c in ((rows + d, cols), (rows, cols + d)):
                image[:, r.clamp(0, side - 1), c.clamp(0, side - 1)] = torch.tensor([0.9, 0.1, 0.1])[:, None]
    return image


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


def path_image(paths: Tensor, means: Tensor | None, side: int = 512) -> Tensor:
    """Latent interpolations of a 2D generator ([rows, K, 2]) drawn over the true modes.

    Each row is a polyline in its own colour through its K points; its first point
    is a black square and its last a square in the row's colour. Red crosses mark
    the modes, framed as in :func:`scatter_image`.
    """
    paths = paths.detach().float().cpu()
    reference = means if means is not None else paths.reshape(-1, 2)
    image = scatter_image(paths.reshape(-1, 2)[:0], means, side) if means is not None else torch.ones(3, side, side)
    low, high = reference.min(0).values, reference.max(0).values
    span = (high - low).max().clamp(min=1e-6)
    centre, scale = (high + low) / 2, (side - 1) / (span * 1.3)

    def paint(points: Tensor, colour: tuple[float, ...], radius: int = 0) -> None:
        xy = ((points - centre) * scale + (side - 1) / 2).round().long()
        for dr in range(-radius, radius + 1):
            for dc in range(-radius, radius + 1):
                rows, cols = side - 1 - xy[:, 1] + dr, xy[:, 0] + dc
                inside = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)
                image[:, rows[inside], cols[inside]] = torch.tensor(colour)[:, None]

    for index, path in enumerate(paths):
        colour = PATH_COLOURS[index % len(PATH_COLOURS)]
        fine = torch.linspace(0, 1, side)[:, None]
        segments = [a + fine * (b - a) for a, b in itertools.pairwise(path)]
        paint(torch.cat(segments) if segments else path, colour)
        paint(path, colour, radius=1)
        paint(path[:1], (0.0, 0.0, 0.0), radius=3)
        paint(path[-1:], colour, radius=3)
    return image


def save_paths(walks: Tensor, path: Path, data_info: dict[str, Any]) -> None:
    """A PNG of :func:`path_image` for 2D interpolations ``walks`` ([rows, K, 2])."""
    from torchvision.utils import save_image

    save_image(path_image(walks, data_info.get("means")), path)


def write_config_files(run_dir: Path, config: Any) -> None:
    """``config.json`` and ``config.toml``: the same resolved configuration, either reruns the run."""
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n")
    header = "# The resolved configuration of this run. Rerun it: ganforge run --config config.toml --out NEW\n"
    (run_dir / "config.toml").write_text(header + toml_text(config.model_dump(mode="json")), encoding="utf-8")


def toml_text(data: dict[str, Any]) -> str:
    """``data`` as TOML, written by tomli-w. TOML has no null, so a key whose value is ``None``
    is left out; in a run configuration that means "derive it", which is what ``None`` means there."""
    import tomli_w

    return tomli_w.dumps(_without_none(data))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


LOSS_CURVES = ("loss/d", "loss/g")


def plot_losses(metrics: Path, out: Path) -> Path | None:
    """Draw D and G loss over steps from ``metrics.jsonl`` into a PNG.

    Returns ``out``, or ``None`` when matplotlib is not installed or there is
    nothing to draw. Uses matplotlib's Agg canvas directly: no pyplot, no GUI,
    and no change to the backend of a program that imported ganforge.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    curves: dict[str, tuple[list[int], list[float]]] = {key: ([], []) for key in LOSS_CURVES}
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "event" in record:
            continue
        for key, (steps, values) in curves.items():
            value = record.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                steps.append(int(record["step"]))
                values.append(float(value))
    if not any(steps for steps, _ in curves.values()):
        return None
    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for key, (steps, values) in curves.items():
        if steps:
            axes.plot(steps, values, label=key, linewidth=1.2)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(out.parent.name or "losses")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(out)
    return out
