"""The check of a schedule: D steps per G step and the learning-rate multiplier."""

from __future__ import annotations

import math

from ganforge_core.components import Schedule
from ganforge_core.testing.objects import _check


def check_schedule(schedule: Schedule, total_steps: int = 10) -> None:
    """At least one D step per G step, and a finite, non-negative learning-rate multiplier at every step."""
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
