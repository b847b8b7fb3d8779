"""The options of the DCGAN networks; importable without torch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from ganforge_core import Options


def _init() -> Any:
    return Field(
        "dcgan",
        description="weight initialisation; dcgan: conv weights N(0, 0.02), normalisation gains N(1, 0.02), "
        "biases 0 (Radford et al. 2016); pytorch: PyTorch's default for each layer",
    )


class GeneratorOptions(Options):
    z_dim: int = Field(100, ge=1, le=4096, description="latent dimensions")
    width: int = Field(64, ge=1, le=1024, description="channels of the last hidden layer; doubled per layer inwards")
    init: Literal["dcgan", "pytorch"] = _init()


class DiscriminatorOptions(Options):
    width: int = Field(64, ge=1, le=1024, description="channels of the first layer; doubled per layer")
    init: Literal["dcgan", "pytorch"] = _init()
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
