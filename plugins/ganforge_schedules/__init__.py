"""Training schedules: ``constant`` (fixed learning rates, fixed D steps per G step)."""

from __future__ import annotations

from ganforge_core import BuildContext, Schedule, ScheduleOptions, hookimpl


class ConstantOptions(ScheduleOptions):
    """Only ``d_steps``."""


def build_constant(options: ConstantOptions, ctx: BuildContext) -> Schedule:
    assert options.d_steps is not None  # filled in from the loss's recommendation
    return Schedule(d_steps=options.d_steps)


@hookimpl
def ganforge_register_schedulers(register):
    register(
        "constant",
        build_constant,
        options=ConstantOptions,
        summary="constant learning rates; d_steps D steps per G step",
    )
