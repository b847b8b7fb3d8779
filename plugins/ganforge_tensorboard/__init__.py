"""TensorBoard logging: ``ganforge run --logger tensorboard``.

A built-in plugin (entry point ``tensorboard``) that registers one logger
component. It writes, through ``torch.utils.tensorboard.SummaryWriter``, into
``RUN_DIR/tensorboard/`` (or ``--logger tensorboard:dir=NAME``):

* every logged statistic (``loss/d``, ``loss/g``, ``d/real``, ``img/s``, ...)
  as a scalar at its step;
* every sample picture the run writes (``samples-XXXXXXXX.png`` at its step and
  the final ``samples.png``) as the image ``samples``, read back from the PNG
  file, so the logger never draws from G and exact resume is untouched;
* the final metric values as scalars ``eval/NAME``.

On resume the writer purges events after the checkpoint's step (``purge_step``),
so TensorBoard drops the events of steps that are trained again. The component
``needs`` the ``tensorboard`` package, which the core checks before training
starts (``pip install tensorboard``); ``metrics.jsonl`` is written either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from ganforge_core import Logger, Options, Register, RunContext, hookimpl


class TensorBoardOptions(Options):
    dir: str = Field("tensorboard", min_length=1, description="event directory, relative to the run directory")
    flush_every: int = Field(1, ge=1, le=10**6, description="flush events to disk every this many log intervals")


class TensorBoardLogger(Logger):
    def __init__(self, options: TensorBoardOptions, run: RunContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.options = options
        self.start_step = run.start_step
        self.final_grid_step: int | None = None
        self._logged = 0
        # On resume, drop events of the steps after the checkpoint: they are trained (and logged) again.
        purge = run.start_step + 1 if run.start_step else None
        self.writer = SummaryWriter(log_dir=str(Path(run.run_dir) / options.dir), purge_step=purge)
        self.writer.add_text(
            "config", "```\n" + run.config.model_dump_json(indent=2) + "\n```", global_step=run.start_step
        )

    def log(self, step: int, stats: Mapping[str, float]) -> None:
        for name, value in stats.items():
            self.writer.add_scalar(name, value, global_step=step)
        self._logged += 1
        if self._logged % self.options.flush_every == 0:
            self.writer.flush()

    def samples(self, step: int, path: Path) -> None:
        if path.name == "samples.png" and self.final_grid_step == step:
            return  # the final grid is the one of this step's samples-XXXXXXXX.png
        if path.name != "samples.png":
            self.final_grid_step = step
        import torch
        from PIL import Image

        with Image.open(path) as image:
            rgb = image.convert("RGB")
        pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
        self.writer.add_image("samples", pixels, global_step=step, dataformats="HWC")

    def end(self, step: int, results: Mapping[str, float]) -> None:
        for name, value in results.items():
            self.writer.add_scalar(f"eval/{name}", value, global_step=step)

    def close(self) -> None:
        self.writer.close()


def _build(options: TensorBoardOptions, run: RunContext) -> TensorBoardLogger:
    return TensorBoardLogger(options, run)


@hookimpl
def ganforge_register_loggers(register: Register) -> None:
    register(
        "tensorboard",
        _build,
        options=TensorBoardOptions,
        summary="TensorBoard event files: logged statistics, sample pictures, final metrics",
        needs=("tensorboard",),
        paper="https://www.tensorflow.org/tensorboard",
    )
