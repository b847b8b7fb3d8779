"""The options of the DCGAN networks; importable without torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from ganforge_core import Options


class GeneratorOptions(Options):
    z_dim: int = Field(100, ge=1, le=4096, description="latent dimensions")
    width: int = Field(64, ge=1, le=1024, description="channels of the last hidden layer; doubled per layer inwards")


class DiscriminatorOptions(Options):
    width: int = Field(64, ge=1, le=1024, description="channels of the first layer; doubled per layer")
    norm: Literal["auto", "batch", "layer", "none"] = Field(
        "auto",
        validate_default=True,
        description="normalisation; auto: batch, or layer when the loss or a regularizer penalises D's "
        "input gradient (trait input-gradient-penalty)",
    )

    @field_validator("norm")
    @classmethod
    def _auto(cls, value: str, info: ValidationInfo) -> str:
        if value != "auto":
            return value
        resolve = (info.context or {}).get("resolve")
        penalised = resolve is not None and "input-gradient-penalty" in resolve.loss_traits | resolve.regularizer_traits
        return "layer" if penalised else "batch"
