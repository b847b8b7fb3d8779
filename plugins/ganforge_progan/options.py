"""The options of the progressive networks, their sizes and the growth schedule; no torch.

The schedule is a pure function of the step: :meth:`Growth.at` maps G step
``step`` of ``total_steps`` to the stage (0 is 4x4, stage ``s`` is ``4 * 2**s``
pixels) and the fade-in weight alpha of the newest stage, in exact rational
arithmetic on :func:`ganforge_core.run_progress`, so a resumed run takes the very
stages and weights of a run never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from pydantic import Field

from ganforge_core import ConfigError, Options

MAX_SIDE = 1024  # ProGAN's largest images


class GrowthOptions(Options):
    """The growth schedule; give G and D the same one (the defaults agree)."""

    stage_fraction: float | None = Field(
        None, gt=0.0, le=1.0,
        description="fraction of the run each stage before the last takes, its fade-in included; "
        "default: equal shares (1 / stages); the last stage takes the rest",
    )
    fade: float = Field(
        0.5, ge=0.0, le=1.0,
        description="fraction of each new stage's share spent fading it in (ProGAN: half; 0: no fade-in)",
    )


class GeneratorOptions(GrowthOptions):
    z_dim: int = Field(128, ge=1, le=4096, description="latent dimensions (ProGAN: 512)")
    width: int = Field(
        64, ge=1, le=1024,
        description="channels at 4x4 and 8x8, halved at each larger stage down to width/8 (ProGAN: 512; "
        "64 keeps CPU runs quick)",
    )


class DiscriminatorOptions(GrowthOptions):
    width: int = Field(
        64, ge=1, le=1024,
        description="channels at 4x4 and 8x8, halved at each larger stage down to width/8 (ProGAN: 512; "
        "64 keeps CPU runs quick)",
    )
    group_size: int = Field(
        4, ge=1, le=1024,
        description="samples per minibatch-standard-deviation group (ProGAN's code: 4; the largest divisor "
        "of the batch up to this)",
    )


def working_side(shape: tuple[int, ...]) -> int:
    """The side the networks work at: the smallest power of two >= 4 and >= the images' larger side.

    Images of another size are padded to it for D and cropped from G's output (28x28 MNIST works at 32).
    """
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"progan needs images [C, H, W]; the dataset's samples are {list(shape)}")
    side = 4
    while side < max(shape[1], shape[2]):
        side *= 2
    if side > MAX_SIDE:
        raise ConfigError(f"progan grows to at most {MAX_SIDE}x{MAX_SIDE}; the dataset's images are {list(shape)}")
    return side


def stage_count(side: int) -> int:
    """Stages from 4x4 to ``side`` (a power of two >= 4): 4 -> 1, 8 -> 2, 32 -> 4."""
    return side.bit_length() - 2


def widths(width: int, stages: int) -> list[int]:
    """Channels of each stage: ``width`` at 4x4 and 8x8, halved at each larger stage, down to width // 8."""
    return [max(width >> max(0, s - 1), width // 8, 1) for s in range(stages)]


@dataclass(frozen=True)
class Growth:
    """When each stage starts and fades in: stage ``s`` (>= 1) starts at ``s * share`` of the run
    (:func:`ganforge_core.run_progress`) and its weight alpha rises linearly from 0 to 1 over the
    first ``fade`` of its share; stage 0 and a faded-in stage have alpha 1."""

    stages: int
    share: Fraction
    fade: Fraction

    @classmethod
    def of(cls, options: GrowthOptions, stages: int) -> Growth:
        # Fractions of the decimals as written (0.2 is 1/5, not the float nearest it), so stages start on the
        # steps the user's numbers name.
        share = Fraction(1, stages) if options.stage_fraction is None else Fraction(str(options.stage_fraction))
        if (stages - 1) * share > 1:
            raise ConfigError(
                f"progan: stage_fraction={options.stage_fraction} for each of the {stages - 1} stages after 4x4 "
                f"is more than the run; at most {1 / (stages - 1):.4g}"
            )
        return cls(stages, share, Fraction(str(options.fade)))

    def at(self, step: int, total_steps: int) -> tuple[int, float]:
        """(stage, alpha) at G step ``step`` (0-based) of ``total_steps``."""
        # ganforge_core.run_progress, exactly
        progress = Fraction(1) if total_steps <= 1 else min(max(Fraction(step, total_steps - 1), Fraction(0)), Fraction(1))
        stage = min(int(progress / self.share), self.stages - 1)
        if stage == 0 or self.fade == 0:
            return stage, 1.0
        into = (progress - stage * self.share) / self.share
        return stage, float(min(into / self.fade, Fraction(1)))
