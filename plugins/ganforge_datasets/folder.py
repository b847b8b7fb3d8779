"""``folder``: any directory of images; sub-folders are the classes.

``root/cat/1.png, root/dog/2.jpg`` gives two classes (sub-folders in sorted
order); a flat ``root/*.png`` gives one class. Each image is made square by the
``policy`` (centre crop, black padding, or refused), resized to ``size`` and
converted to ``channels`` (1: grey, 3: RGB). :class:`FolderSource` decodes images
when they are read, so a run can stream them through worker processes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganforge_core import BuildContext, DataError, Dataset
from ganforge_core.datasource import StorageDtype
from ganforge_datasets.images import IMAGE_SUFFIXES, Policy, decode_file, readable_header
from ganforge_datasets.options import FolderOptions
from ganforge_datasets.sources import as_dataset
from ganforge_core.waiting import progress


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


@dataclass
class FolderSource:
    """Image files decoded per read: uint8 ``[channels, size, size]`` each (a SampleSource)."""

    paths: list[Path]
    labels: torch.Tensor | None
    size: int
    channels: int
    policy: Policy = "center-crop"
    dtype: StorageDtype = field(default="uint8", init=False)
    shape: tuple[int, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        self.shape = (self.channels, self.size, self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def decode(self, index: int) -> np.ndarray:
        try:
            return decode_file(self.paths[index], self.size, self.channels, self.policy)
        except DataError as exc:
            raise DataError(f"dataset 'folder': {exc}") from None

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        out = np.empty((len(indices), *self.shape), dtype=np.uint8)
        for row, index in enumerate(indices):
            out[row] = self.decode(index)
        return torch.from_numpy(out)


def open_folder(
    root: Path, size: int, channels: int, policy: Policy = "center-crop", skip_bad: bool = False, check: bool = True
) -> tuple[FolderSource, list[str], list[str]]:
    """The source, its class names and the files skipped.

    Every file's header is read here, so an unreadable image (or a non-square one
    under policy=refuse) is found before training starts, not when a streamed batch
    reaches it: with ``skip_bad`` it is skipped and counted, without it the run stops
    with one line naming the file. (A good header over corrupt pixels is found when read.)
    ``check=False`` reads no header: ``ganforge data prepare`` decodes every image itself."""
    files, classes = find_images(root)
    skipped: list[str] = []
    if not check:
        labels = torch.tensor([label for _, label in files], dtype=torch.long)
        return FolderSource([path for path, _ in files], labels, size, channels, policy), classes, skipped
    kept = []
    with progress(f"checking {len(files):,} images", total=len(files)) as wait:
        for path, label in files:
            problem = readable_header(path, policy)
            wait.advance()
            if problem is None:
                kept.append((path, label))
            elif skip_bad:
                skipped.append(problem)
            else:
                raise DataError(f"dataset 'folder': cannot read image {problem} (skip_bad=true skips such files)")
    if not kept:
        raise DataError(f"dataset 'folder': all {len(files):,} images in {root} are unreadable ({skipped[0]})")
    files = kept
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return FolderSource([path for path, _ in files], labels, size, channels, policy), classes, skipped


def load_folder(options: FolderOptions, ctx: BuildContext) -> Dataset:
    if options.root is None:
        raise DataError("dataset 'folder' needs root=DIR, a directory of images (sub-folders are classes)")
    source, classes, skipped = open_folder(
        options.root.expanduser(), options.size, options.channels, options.policy, options.skip_bad
    )
    if skipped:
        print(f"dataset 'folder': skipped {len(skipped):,} unreadable images (first: {skipped[0]})", file=sys.stderr)
    return as_dataset(source, len(classes), {"classes": classes})
