"""``stacked-mnist``: three mnist-5k digits as the R, G and B channels of one image.

A mode is the triple of digit classes (a, b, c); the label is ``100*a + 10*b + c``,
so there are 1,000 classes (VEEGAN and PacGAN's Stacked MNIST). The ``n`` triples
are drawn with replacement from the 5,000 digits by a generator seeded with
``data_seed``, so every run sees the same training set.
"""

from __future__ import annotations

import torch

from ganforge_core import BuildContext, Dataset
from ganforge_datasets.mnist5k import load_mnist_5k
from ganforge_datasets.options import Mnist5kOptions, StackedMnistOptions


def load_stacked_mnist(options: StackedMnistOptions, ctx: BuildContext) -> Dataset:
    digits = load_mnist_5k(Mnist5kOptions(size=options.size, path=options.path), ctx)
    assert digits.labels is not None and digits.samples is not None
    generator = torch.Generator().manual_seed(options.data_seed)
    picks = torch.randint(len(digits), (options.n, 3), generator=generator)
    images = digits.samples[:, 0][picks]  # [n, 3, H, W]: channel k is digit picks[:, k]
    classes = digits.labels[picks]
    labels = classes[:, 0] * 100 + classes[:, 1] * 10 + classes[:, 2]
    return Dataset(samples=images.contiguous(), labels=labels, num_classes=1000, info={"stacked": 3})
