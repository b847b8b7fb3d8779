"""``folder``: any directory of images; sub-folders are the classes.

``root/cat/1.png, root/dog/2.jpg`` gives two classes (sub-folders in sorted
order); a flat ``root/*.png`` gives one class. Images are centre-cropped to a
square, resized to ``size`` and converted to ``channels`` (1: grey, 3: RGB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganforge_core import BuildContext, DataError, Dataset
from ganforge_core.waiting import progress
from ganforge_datasets.options import FolderOptions

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def _images_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_images(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(image, class index) pairs and the class names; raises DataError if there are none."""
    if not root.is_dir():
        raise DataError(f"dataset 'folder': {root} is not a directory; pass root=DIR (a folder of images)")
    try:
        classes = sorted(d for d in root.iterdir() if d.is_dir() and _images_in(d))
        flat = _images_in(root)
    except OSError as exc:
        raise DataError(f"dataset 'folder': cannot list {root}: {exc.strerror or exc}") from None
    if classes:
        files = [(path, index) for index, folder in enumerate(classes) for path in _images_in(folder)]
        return files, [d.name for d in classes]
    if flat:
        return [(path, 0) for path in flat], [root.name]
    suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
    raise DataError(f"dataset 'folder': no images ({suffixes}) in {root} or its sub-folders")


def read_image(path: Path, size: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            image = image.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"dataset 'folder': cannot read image {path}: {exc}") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def load_folder(options: FolderOptions, ctx: BuildContext) -> Dataset:
    if options.root is None:
        raise DataError("dataset 'folder' needs root=DIR, a directory of images (sub-folders are classes)")
    files, classes = find_images(options.root.expanduser())
    arrays = []
    with progress(f"reading {len(files):,} images", total=len(files)) as wait:
        for path, _ in files:
            arrays.append(read_image(path, options.size, options.channels))
            wait.advance()
    samples = torch.from_numpy(np.stack(arrays))  # uint8: the core scales pixels on the training device
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return Dataset(
        samples=samples,
        labels=labels,
        num_classes=len(classes),
        info={"classes": classes},
    )
