"""Decoding one image into uint8 ``[C, H, W]`` pixels: mode, the non-square policy, the size.

Shared by the ``folder`` and ``zip`` sources and by ``ganforge data prepare``, so a
prepared dataset holds exactly the pixels the streaming source would read.
PIL and numpy are imported here; torch is not.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np

from ganforge_core import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
Policy = Literal["center-crop", "pad", "refuse"]
POLICIES: tuple[Policy, ...] = ("center-crop", "pad", "refuse")


def square(image: object, policy: Policy, name: str) -> object:
    """``image`` (a PIL image) made square: its centre cropped, padded with black, or refused."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    width, height = image.size
    if width == height:
        return image
    if policy == "refuse":
        raise DataError(
            f"image {name} is {width}x{height}, not square (policy=refuse); "
            "choose policy=center-crop or policy=pad"
        )
    if policy == "center-crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))
    side = max(width, height)
    padded = Image.new(image.mode, (side, side))  # black
    padded.paste(image, ((side - width) // 2, (side - height) // 2))
    return padded


def fit(image: object, size: int | None, channels: int, policy: Policy, name: str) -> np.ndarray:
    """A decoded PIL image as uint8 ``[channels, size, size]`` (``size`` None: its own side)."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    converted = image.convert("L" if channels == 1 else "RGB")
    squared = square(converted, policy, name)
    assert isinstance(squared, Image.Image)
    if size is not None and squared.size != (size, size):
        squared = squared.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(squared, dtype=np.uint8)
    return array[None] if channels == 1 else np.ascontiguousarray(array.transpose(2, 0, 1))


def decode_file(path: Path, size: int | None, channels: int, policy: Policy) -> np.ndarray:
    """The image file at ``path`` as uint8 ``[C, H, W]``; DataError naming it if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            opened.load()
            return fit(opened, size, channels, policy, str(path))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def decode_bytes(data: bytes, name: str, size: int | None, channels: int, policy: Policy) -> np.ndarray:
    """An encoded image held in memory (a zip member) as uint8 ``[C, H, W]``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return fit(opened, size, channels, policy, name)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {name}: {exc}") from None


def readable_header(path: Path, policy: Policy) -> str | None:
    """Why the image at ``path`` would be skipped, judged from its header alone; None if it looks fine."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            width, height = opened.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        return f"{path}: {exc}"
    if policy == "refuse" and width != height:
        return f"{path}: {width}x{height}, not square"
    return None
