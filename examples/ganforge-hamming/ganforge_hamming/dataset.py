"""``hamming-7``: codewords of the Hamming(7,4) code as vectors of seven signs, through a noisy channel."""

from __future__ import annotations

import torch

from ganforge_core import BuildContext, Dataset
from ganforge_hamming.code import LENGTH, WORDS, as_signs, codeword_bits
from ganforge_hamming.options import HammingOptions


def build_dataset(options: HammingOptions, ctx: BuildContext) -> Dataset:
    """``n`` codewords drawn uniformly, each bit then flipped with probability ``flip``.

    Samples are float32 ``[n, 7]`` in {-1, +1}; the labels are the codewords sent
    (before the flips), 16 classes. A fixed set: the ``seed`` option draws it, not the run's seed.
    """
    source = torch.Generator().manual_seed(options.seed)
    words = codeword_bits()
    sent = torch.randint(WORDS, (options.n,), generator=source)
    flips = (torch.rand(options.n, LENGTH, generator=source) < options.flip).long()
    return Dataset(
        samples=as_signs(words[sent] ^ flips),
        labels=sent,
        num_classes=WORDS,
        info={"codewords": as_signs(words), "flip": options.flip},
    )
