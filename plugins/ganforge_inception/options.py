"""The options of the Inception metrics and where their weights come from; importable without torch."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from ganforge_core import Options

ENV = "GANFORGE_INCEPTION_WEIGHTS"
# `ganforge eval --metric` takes names only, so the variable comes first.
NO_WEIGHTS = (
    f"no Inception v3 weights: set {ENV}=FILE (a torchvision inception_v3 state dict), or give the metric "
    "weights=FILE, or download=true to fetch torchvision's ImageNet weights into torch.hub's cache once "
    "(needs the internet)"
)


class InceptionOptions(Options):
    download: bool = Field(
        False,
        description="use torchvision's ImageNet weights from torch.hub's cache ($TORCH_HOME/hub/checkpoints), "
        "downloading them there first if missing (needs the internet once)",
    )
    weights: str | None = Field(
        None,
        validate_default=True,
        description="a local torchvision inception_v3 state dict (.pt/.pth, read with weights_only=True); "
        f"default: ${ENV}",
    )
    samples: int = Field(
        5_000, ge=2, le=1_000_000,
        description="generated samples; capped at half the real set so the real floor has two halves"
    )
    splits: int = Field(
        5, ge=1, le=1000,
        description="random halvings of the real samples that the score and its floor are averaged over"
    )
    batch_size: int = Field(50, ge=1, le=10_000, description="images per Inception forward pass")

    @field_validator("weights")
    @classmethod
    def _find_weights(cls, value: str | None, info: ValidationInfo) -> str | None:
        download = info.data.get("download", False)
        if value is not None and download:
            raise ValueError("give weights=FILE or download=true, not both")
        if value is None and not download:
            value = os.environ.get(ENV) or None
        if value is None and not download and _resolving_a_run(info):
            # Fail before training rather than after it. Validated on their own (ganforge
            # plugins, a contract check, `ganforge eval --metric`), the options stay valid
            # and the metric says the same thing when it runs.
            raise ValueError(NO_WEIGHTS)
        # Absolute, so config.json names the same file from any directory. Whether it exists
        # is checked when the metric runs: a run copied elsewhere must still load and sample.
        return str(Path(value).expanduser().absolute()) if value is not None else None


def _resolving_a_run(info: ValidationInfo) -> bool:
    """``resolve()`` validates metrics with the run's dataset traits in the context."""
    context = (info.context or {}).get("resolve")
    return bool(getattr(context, "data_traits", None))
