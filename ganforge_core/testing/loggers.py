"""The check of a logger: it takes every record a short run sends it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ganforge_core.components import Dataset, Logger, RunContext
from ganforge_core.config import RunConfig
from ganforge_core.testing.objects import TinyCritic, TinyGenerator, _check


def check_logger(build: Callable[[RunContext], Logger], run_dir: Path) -> None:
    """A logger starts from a :class:`RunContext`, takes every record a run sends it, and closes.

    ``build(run)`` makes the logger (``lambda run: MyLogger(options, run)``). It is
    fed what a short run feeds it, in order: statistics, a sample picture, a
    checkpoint path, the end with results, then ``close``.
    """
    from PIL import Image

    generator = TinyGenerator((2,))
    run = RunContext(
        config=RunConfig(generator="mlp", dataset="ring-8", steps=2, out=run_dir),
        run_dir=run_dir,
        device=torch.device("cpu"),
        start_step=0,
        generator=generator,
        discriminator=TinyCritic(2),
        dataset=Dataset(torch.zeros(4, 2)),
    )
    logger = build(run)
    for method in ("log", "samples", "checkpoint", "end", "close"):
        _check(callable(getattr(logger, method, None)), f"the logger has no method {method}(); subclass ganforge_core.Logger")
    picture = run_dir / "samples-00000001.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(picture)
    checkpoint = run_dir / "checkpoint-00000001.pt"
    checkpoint.write_bytes(b"")
    logger.log(1, {"loss/d": 1.0, "loss/g": 0.5})
    logger.samples(1, picture)
    logger.checkpoint(1, checkpoint)
    logger.log(2, {"loss/d": 0.9, "loss/g": 0.6})
    logger.end(2, {"metric/value": 0.25})
    logger.close()
