"""What a run shows and records: progress, metrics.jsonl, sample pictures (drawn by
:mod:`ganforge_core.pictures` or the dataset's renderer) and loss curves."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from torch import Tensor

from ganforge_core import waiting
from ganforge_core.errors import GanforgeError

if TYPE_CHECKING:
    from ganforge_core.registry import Component


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


ACCURACY = ("d/accuracy/real", "d/accuracy/fake")


def format_stats(stats: dict[str, float]) -> str:
    shown = ("loss/d", "loss/g", "d/real", "d/fake", *ACCURACY, "loss/gp", "ada/p", "img/s", "lr/g", "lr/d")
    return "  ".join(f"{k}={stats[k]:.3g}" for k in shown if k in stats)


# What the live view shows of the logged statistics, and as what.
# loss/gp is wgan-gp's penalty, ada/p the augmentation probability of the ada regularizer.
LIVE_STATS = (
    ("loss/d", "loss D"),
    ("loss/g", "G"),
    ("d/real", "D(x)"),
    ("d/fake", "D(G(z))"),
    ("loss/gp", "gp"),
    ("ada/p", "ADA p"),
)


def _accuracy_text(stats: dict[str, float]) -> str:
    """D's accuracy on the real and the fake batches, in percent, as the live view shows it."""
    if not all(key in stats for key in ACCURACY):
        return ""
    real, fake = (stats[key] for key in ACCURACY)
    return f"  D acc real {real:.0%} fake {fake:.0%}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressView:
    """What a run shows while it trains.

    On a terminal (``live``): a rich progress bar with ETA, and under it the latest
    logged D and G losses, D(x), D(G(z)), D's accuracy on real and fake batches, ADA's p,
    img/s, both learning rates and the last
    checkpoint; warnings (the health monitors' included) print above it, and the bars of
    waits (:mod:`ganforge_core.waiting`: the evaluation's) below the training bar. Elsewhere:
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
        self._waits = contextlib.ExitStack()
        if self.live:
            self._bar = _live_progress(self.status, console)
            self._task = self._bar.add_task("training", total=total, completed=start)
            self._bar.start()
            self._waits.enter_context(waiting.joining(self._bar))  # the evaluation's bar joins the view

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
        numbers += _accuracy_text(stats)
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
        self._waits.close()
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
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def render_samples(
    samples: Tensor,
    path: Path,
    *,
    info: Mapping[str, Any],
    dataset: Component | None = None,
    columns: int | None = None,
    real: Tensor | None = None,
) -> None:
    """Draw ``samples`` ([N, *data shape]) into the picture ``path``.

    With the renderer the ``dataset`` component registered (``render=``), that;
    otherwise a default by shape (:mod:`ganforge_core.pictures`): a grid for
    images, a scatter with axes for 2D points (over the true modes when ``info``
    has ``means``), and per-dimension histograms with the first samples written
    out for anything else. ``real`` samples, when the caller has them, are drawn
    beside the generated ones by the scatter and the histograms. ``columns``: that
    many per row where the picture is a grid.
    """
    from ganforge_core import pictures

    samples = samples.detach().float().cpu()
    if dataset is not None and dataset.render is not None:
        _call_renderer(dataset, samples, path, info, columns)
        return
    shape = tuple(samples.shape[1:])
    real = None if real is None else real.detach().float().cpu()
    if pictures.is_image(shape):
        pictures.grid(samples, path, columns)
    elif pictures.is_points(shape):
        pictures.scatter(samples, path, means=info.get("means"), real=real)
    else:
        pictures.summary(samples, path, real=real)


def render_interpolation(
    walks: Tensor, path: Path, *, info: Mapping[str, Any], dataset: Component | None = None
) -> None:
    """Draw interpolations ``walks`` ([rows, K, *data shape]) into the picture ``path``.

    A dataset's own renderer gets the rows one after another, ``columns=K``. By
    default: images as one row per path, 2D points as paths over the modes, any
    other shape as a heat-map of each path's values along its steps.
    """
    from ganforge_core import pictures

    walks = walks.detach().float().cpu()
    steps, shape = walks.shape[1], tuple(walks.shape[2:])
    if dataset is not None and dataset.render is not None:
        _call_renderer(dataset, walks.flatten(0, 1), path, info, steps)
    elif pictures.is_image(shape):
        pictures.grid(walks.flatten(0, 1), path, columns=steps)
    elif pictures.is_points(shape):
        pictures.paths(walks, path, means=info.get("means"))
    else:
        pictures.walk_heatmap(walks, path)


def _call_renderer(
    dataset: Component, samples: Tensor, path: Path, info: Mapping[str, Any], columns: int | None
) -> None:
    """The dataset's own renderer; its failure is one line naming the plugin, not a traceback."""
    assert dataset.render is not None
    where = f"{dataset.label} (plugin '{dataset.plugin}')"
    try:
        dataset.render(samples, path, info=info, columns=columns)
    except GanforgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's renderer may fail in any way
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise GanforgeError(
            f"{where}: its renderer failed on samples of shape {list(samples.shape)} ({reason})"
        ) from None
    if not path.is_file():
        raise GanforgeError(f"{where}: its renderer wrote nothing to {path}")


def write_config_files(run_dir: Path, config: Any) -> None:
    """``config.json`` and ``config.toml``: the same resolved configuration, either reruns the run."""
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n")
    header = "# The resolved configuration of this run. Rerun it: ganforge run --config config.toml --out NEW\n"
    (run_dir / "config.toml").write_text(header + toml_text(config.model_dump(mode="json")), encoding="utf-8")


def toml_text(data: dict[str, Any]) -> str:
    """``data`` as TOML, written by tomli-w. TOML has no null, so a key whose value is ``None``
    is left out; in a run configuration that means "derive it", which is what ``None`` means there."""
    import tomli_w

    return tomli_w.dumps(without_none(data))


def without_none(value: Any) -> Any:
    """``value`` with the ``None`` entries of its dicts left out, in lists too (``regularizers``):
    what a configuration looks like once written as TOML and read back."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(item) for item in value]
    return value


LOSS_CURVES = ("loss/d", "loss/g")


def plot_losses(metrics: Path, out: Path) -> Path | None:
    """Draw D and G loss over steps from ``metrics.jsonl`` into a PNG.

    Returns ``out``, or ``None`` when there is nothing to draw. Uses matplotlib's
    Agg canvas directly: no pyplot, no GUI, and no change to the backend of a
    program that imported ganforge.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
