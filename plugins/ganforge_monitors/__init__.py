"""Health monitors: warn once when a run takes a known failure shape.

A built-in plugin (entry point ``monitors``) that implements lifecycle hooks
only, so it registers no components. On every logged interval from step
``SETTINGS.warmup_steps`` (50) on, once the networks have had a chance to
train, it looks for:

* **D wins**: ``loss/d`` near zero (below 0.05) in most of the last intervals
  (8 of 10) while ``loss/g`` climbs; skipped for Wasserstein losses, whose
  critic loss crosses zero in healthy runs.
* **Frozen losses**: ``loss/d`` and ``loss/g`` unchanged (to ~1e-7 relative)
  for many consecutive intervals.
* **Identical samples** (mode collapse): at the first interval checked and every few
  after, a small batch from G (eval mode, ``no_grad``, inside
  ``torch.random.fork_rng``, so exact resume holds) whose per-feature spread
  is ~0 next to the data's.
* **One image per class** (conditional runs): at the same intervals, a few samples
  of each class (8; a random subset of classes past 64), whose spread is below 20%
  of that real class's, though the samples overall vary (the classes supply the
  overall spread, so the check above cannot see it). The warning names the classes.

Each shape is reported at most once per run through ``run.warn``: one line on
the console and an ``{"event": "warning"}`` record in ``metrics.jsonl``, with a
hint of what to try. A monitor never stops a run; if a check itself fails, it
says so once and monitoring is off for that run. Leave the plugin out with
``GANFORGE_PLUGINS`` (an allow-list of entry-point names).
"""

from __future__ import annotations

from typing import Any

from ganforge_core import RunContext, hookimpl
from ganforge_monitors.monitors import KEY, Settings, State, observe, sample_spread, start

SETTINGS = Settings()

__all__ = ["KEY", "SETTINGS", "Settings", "State", "ganforge_step_end", "ganforge_train_start", "sample_spread"]


@hookimpl
def ganforge_train_start(run: RunContext) -> None:
    try:
        start(run, SETTINGS)
    except Exception as exc:  # noqa: BLE001 - a monitor must never end a run
        run.extra[KEY] = State(settings=SETTINGS, stopped=True)
        run.warn(f"monitors: could not start ({exc!r}); health monitoring is off for this run")


@hookimpl
def ganforge_step_end(run: RunContext, step: int, stats: dict[str, float]) -> None:
    observe(run, step, stats, SETTINGS)
