"""TensorBoard logging: ``ganforge run --logger tensorboard``.

A built-in plugin (entry point ``tensorboard``) that implements lifecycle hooks
only. It does nothing unless ``"tensorboard"`` is in ``run.config.loggers``;
then it writes, through ``torch.utils.tensorboard.SummaryWriter``, into
``RUN_DIR/tensorboard/``:

* every logged statistic (``loss/d``, ``loss/g``, ``d/real``, ``img/s``, ...)
  as a scalar at its step (``ganforge_step_end``);
* every sample grid the run writes (``samples-XXXXXXXX.png`` at its step and the
  final ``samples.png``) as the image ``samples``, read back from the PNG files,
  so the plugin never draws from G and exact resume is untouched;
* the final metric values as scalars ``eval/NAME`` (``ganforge_train_end``).

On resume the writer purges events after the checkpoint's step (``purge_step``),
so TensorBoard drops the events of steps that are trained again. The core checks
that the ``tensorboard`` package is installed before training starts
(``pip install tensorboard``); ``metrics.jsonl`` is written either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganforge_core import hookimpl

NAME = "tensorboard"
KEY = "tensorboard"  # run.extra[KEY] holds this plugin's state
SAMPLE_FILE = re.compile(r"^samples-(\d+)\.png$")


@dataclass
class State:
    writer: Any
    seen: set[str] = field(default_factory=set)


def _enabled(run: Any) -> bool:
    return NAME in getattr(run.config, "loggers", ())


def _state(run: Any) -> State | None:
    return run.extra.get(KEY)


def _add_new_samples(run: Any, state: State, final_step: int | None = None) -> None:
    """Log every sample grid file not logged yet, at the step in its name."""
    import torch
    from PIL import Image

    found: list[tuple[int, Path]] = []
    for path in Path(run.run_dir).glob("samples*.png"):
        match = SAMPLE_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
        elif path.name == "samples.png" and final_step is not None:
            if not (path.parent / f"samples-{final_step:08d}.png").exists():  # else the same grid twice
                found.append((final_step, path))
    for step, path in sorted(found):
        if path.name in state.seen or step <= run.start_step and path.name != "samples.png":
            continue
        state.seen.add(path.name)
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
        state.writer.add_image("samples", pixels, global_step=step, dataformats="HWC")


@hookimpl
def ganforge_train_start(run: Any) -> None:
    if not _enabled(run):
        return
    from torch.utils.tensorboard import SummaryWriter

    # On resume, drop events of the steps after the checkpoint: they are trained (and logged) again.
    purge = run.start_step + 1 if run.start_step else None
    writer = SummaryWriter(log_dir=str(Path(run.run_dir) / "tensorboard"), purge_step=purge)
    writer.add_text("config", "```\n" + run.config.model_dump_json(indent=2) + "\n```", global_step=run.start_step)
    run.extra[KEY] = State(writer)


@hookimpl
def ganforge_step_end(run: Any, step: int, stats: dict[str, float]) -> None:
    state = _state(run)
    if state is None:
        return
    for name, value in stats.items():
        state.writer.add_scalar(name, value, global_step=step)
    _add_new_samples(run, state)
    state.writer.flush()


@hookimpl
def ganforge_train_end(run: Any, step: int, results: dict[str, float]) -> None:
    state = run.extra.pop(KEY, None)
    if state is None:
        return
    try:
        for name, value in results.items():
            state.writer.add_scalar(f"eval/{name}", value, global_step=step)
        _add_new_samples(run, state, final_step=step)
    finally:
        state.writer.close()
