"""The check of a schedule: D steps per G step and the learning-rate multiplier."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ganforge_core.components import Schedule
from ganforge_core.testing.objects import _check


def check_schedule(schedule: Schedule, total_steps: int = 10, traits: Iterable[str] = ()) -> None:
    """At least one D step per G step, a finite, non-negative learning-rate multiplier at every step, and
    Adam's beta2: in [0, 1) at every step for the trait ``beta2-schedule``, else the run's throughout (the
    core never asks a schedule without the trait, so a beta2 it returned would be silently ignored)."""
    _check(isinstance(schedule, Schedule), f"a schedule subclasses ganforge_core.Schedule, got {type(schedule)}")
    _check(
        isinstance(schedule.d_steps, int) and schedule.d_steps >= 1,
        f"schedule.d_steps must be an int >= 1, got {schedule.d_steps!r}",
    )
    for step in range(total_steps + 1):
        factor = schedule.lr_multiplier(step, total_steps)
        _check(
            math.isfinite(factor) and factor >= 0,
            f"lr_multiplier({step}, {total_steps}) = {factor}; must be finite and >= 0",
        )
    ramps = "beta2-schedule" in set(traits)
    for final in (0.99, 0.5):
        for step in range(total_steps + 1):
            beta2 = schedule.adam_beta2(step, total_steps, final)
            _check(
                isinstance(beta2, float | int) and not isinstance(beta2, bool) and 0 <= beta2 < 1,
                f"adam_beta2({step}, {total_steps}, {final}) = {beta2!r}; Adam's beta2 is a number in [0, 1)",
            )
            _check(
                ramps or beta2 == final,
                f"adam_beta2({step}, {total_steps}, {final}) = {beta2!r}, not the run's {final}: a schedule "
                "that changes beta2 declares the trait 'beta2-schedule' (the core asks no other)",
            )
