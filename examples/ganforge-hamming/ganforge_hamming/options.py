"""What users can set on each component (``NAME:key=value,...``). Pydantic only: no torch here."""

from __future__ import annotations

from pydantic import Field, field_validator

from ganforge_core import Options

RESULTS_FILE = "results.csv"


class HammingOptions(Options):
    n: int = Field(4096, ge=1, description="samples in the fixed training set")
    flip: float = Field(
        0.0, ge=0.0, le=1.0, description="probability that each bit of a sample is flipped (channel noise)"
    )
    seed: int = Field(0, ge=0, description="seed that draws the training set")


class CodewordsOptions(Options):
    samples: int = Field(2048, ge=1, description="generated samples to classify")


class CsvOptions(Options):
    file: str = Field(
        "metrics.csv",
        pattern=r"^[^/\\]+\.csv$",
        description=f"file in the run directory for the logged statistics (the final metrics go to {RESULTS_FILE})",
    )

    @field_validator("file")
    @classmethod
    def _not_the_results_file(cls, value: str) -> str:
        if value == RESULTS_FILE:
            raise ValueError(f"{RESULTS_FILE} holds the final metrics; name another file")
        return value


class PathLengthOptions(Options):
    weight: float = Field(2.0, ge=0.0, description="the penalty is weight * mean((|J^T y| - a)^2) (StyleGAN2: 2)")
    decay: float = Field(
        0.99, ge=0.0, lt=1.0, description="decay of a, the moving average of the path length (StyleGAN2: 0.99)"
    )
    every: int = Field(4, ge=1, description="lazy regularization: a G reg phase every k steps (StyleGAN2: 4)")


class ZeroGPOptions(Options):
    gamma: float = Field(1.0, ge=0.0, description="the penalty is gamma/2 * E||grad D(x_hat)||^2")
    every: int = Field(4, ge=1, description="lazy regularization: a D reg phase every k D steps")
