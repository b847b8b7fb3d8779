"""Training schedules: ``constant``, ``linear-decay``, ``cosine`` and ``step``.

Each gives D steps per G step (``d_steps``) and a learning-rate multiplier
applied to both networks' base rates. Different rates for G and D (TTUR,
Heusel et al. 2017) are set with ``--lr-g`` and ``--lr-d``; a schedule scales
both alike. The decaying schedules take an optional linear warm-up of
``warmup`` G steps from near 0, after which their decay spans the rest of the run.
``linear-decay`` and ``cosine`` can also move Adam's beta2 over the run
(``beta2_from``): from that value at the first step, along the same curve, to the
run's beta2 (``--betas``) at the last, as R3GAN ramps it from 0.9 to 0.99; such a
schedule has the trait ``beta2-schedule``.
"""

from __future__ import annotations

import math

from pydantic import Field

from ganforge_core import BuildContext, Register, Schedule, ScheduleOptions, hookimpl, run_progress

WARMUP_PAPER = "warm-up: Goyal et al. 2017, 'Accurate, large minibatch SGD'"


class ConstantOptions(ScheduleOptions):
    """Only ``d_steps``."""


class DecayOptions(ScheduleOptions):
    warmup: int = Field(0, ge=0, le=10**9, description="G steps of linear warm-up from near 0 before the decay")


class RampedOptions(DecayOptions):
    end: float = Field(0.0, ge=0.0, le=1.0, description="multiplier reached at the last step")
    beta2_from: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        examples=[0.9],
        description="Adam's beta2 at the first step, moving along the same curve to the run's beta2 (--betas) "
        "at the last (R3GAN: 0.9); none: beta2 stays the run's",
    )


class LinearDecayOptions(RampedOptions):
    """``end`` and ``beta2_from`` on a straight line."""


class CosineOptions(RampedOptions):
    """``end`` and ``beta2_from`` on half a cosine."""


class StepOptions(DecayOptions):
    every: int = Field(1000, ge=1, le=10**9, description="G steps between drops of the learning rate")
    gamma: float = Field(0.5, gt=0.0, le=1.0, description="factor applied at each drop")


class DecaySchedule(Schedule):
    """Warm-up, then ``decay(progress)`` with progress running from 0 to 1 over the remaining steps."""

    def __init__(self, options: DecayOptions) -> None:
        assert options.d_steps is not None  # filled in from the loss's recommendation
        super().__init__(d_steps=options.d_steps)
        self.options = options

    def lr_multiplier(self, step: int, total_steps: int) -> float:
        warmup = self.options.warmup
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return self.decay(step - warmup, total_steps - warmup)

    def decay(self, step: int, steps: int) -> float:
        """The multiplier at step ``step`` of the ``steps`` after the warm-up (0-based)."""
        raise NotImplementedError


class RampedSchedule(DecaySchedule):
    """A decay along ``shape(progress)`` (0 at the start, 1 at the end), which beta2 follows too."""

    options: RampedOptions

    def shape(self, progress: float) -> float:
        raise NotImplementedError

    def decay(self, step: int, steps: int) -> float:
        return 1.0 - (1.0 - self.options.end) * self.shape(run_progress(step, steps))

    def adam_beta2(self, step: int, total_steps: int, final: float) -> float:
        start, warmup = self.options.beta2_from, self.options.warmup
        if start is None:
            return final
        if step < warmup:
            return start
        return start + (final - start) * self.shape(run_progress(step - warmup, total_steps - warmup))


class LinearDecay(RampedSchedule):
    def shape(self, progress: float) -> float:
        return progress


class CosineDecay(RampedSchedule):
    def shape(self, progress: float) -> float:
        return (1 - math.cos(math.pi * progress)) / 2


class StepDecay(DecaySchedule):
    options: StepOptions

    def decay(self, step: int, steps: int) -> float:
        return self.options.gamma ** (step // self.options.every)


def build_constant(options: ConstantOptions, ctx: BuildContext) -> Schedule:
    assert options.d_steps is not None  # filled in from the loss's recommendation
    return Schedule(d_steps=options.d_steps)


def _beta2_traits(options: RampedOptions) -> set[str]:
    return {"beta2-schedule"} if options.beta2_from is not None else set()


@hookimpl
def ganforge_register_schedulers(register: Register) -> None:
    register(
        "constant",
        build_constant,
        options=ConstantOptions,
        summary="constant learning rates; d_steps D steps per G step",
    )
    register(
        "linear-decay",
        lambda options, ctx: LinearDecay(options),
        options=LinearDecayOptions,
        summary="learning rates fall linearly to `end` times their base by the last step; optional warm-up "
        "and beta2 ramp",
        traits=_beta2_traits,
        paper="Gulrajani et al. 2017 (WGAN-GP CIFAR-10 code) and Miyato et al. 2018 decay linearly to 0; "
        + WARMUP_PAPER,
    )
    register(
        "cosine",
        lambda options, ctx: CosineDecay(options),
        options=CosineOptions,
        summary="learning rates follow half a cosine down to `end` times their base; optional warm-up "
        "and beta2 ramp (R3GAN)",
        traits=_beta2_traits,
        paper="Loshchilov & Hutter 2017, 'SGDR: stochastic gradient descent with warm restarts'; " + WARMUP_PAPER,
    )
    register(
        "step",
        lambda options, ctx: StepDecay(options),
        options=StepOptions,
        summary="learning rates multiplied by gamma every `every` steps; optional warm-up",
        paper="He et al. 2016, 'Deep residual learning for image recognition' (step decay); " + WARMUP_PAPER,
    )
