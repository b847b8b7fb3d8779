"""``codewords``: how many generated samples are codewords, and how evenly they cover the 16.

On ``samples`` generated vectors, each read by the sign of its values:

* ``valid``: the fraction that are codewords;
* ``covered``: the codewords that occur at least a quarter as often as under the
  data (the data draws each codeword for 1/16 of the samples, so at least
  ``samples / 64`` times). A codeword a generator makes once in 2,048 samples is
  not covered: at least once would count a mode that is all but dropped;
* ``kl``: KL(U || P), from the uniform U over the 16 codewords to P, the
  distribution of the valid samples over them, smoothed by adding 1/2 to each
  count (the Krichevsky-Trofimov estimate: a missing codeword costs a finite
  amount, log(1/16 / (0.5 / (valid + 8))) / 16). 0 is best. With no valid sample,
  kl is its largest value for ``samples`` samples (all on one codeword), so no
  generator scores better by making no codeword at all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ganforge_core import BuildContext, Dataset, Metric
from ganforge_hamming.code import NOT_A_CODEWORD, WORDS, codeword_counts
from ganforge_hamming.options import CodewordsOptions

COVERED_SHARE = 0.25  # of the count each codeword has under the data
SMOOTHING = 0.5  # added to every codeword's count for kl


def uniform_kl(counts: Tensor) -> float:
    """KL(U || P) for codeword counts ``[16]``, P the counts smoothed by ``SMOOTHING``."""
    smoothed = counts.double() + SMOOTHING
    p = smoothed / smoothed.sum()
    return float((1 / (WORDS * p)).log().mean())


def codeword_statistics(counts: Tensor) -> dict[str, float]:
    """``valid``, ``covered`` and ``kl`` from :func:`~ganforge_hamming.code.codeword_counts`' ``[17]`` counts."""
    n = int(counts.sum())
    words = counts[:WORDS]
    valid = n - int(counts[NOT_A_CODEWORD])
    worst = torch.zeros(WORDS, dtype=torch.long)
    worst[0] = n
    return {
        "valid": valid / n,
        "covered": float((words >= COVERED_SHARE * n / WORDS).sum()),
        "kl": uniform_kl(words if valid else worst),
    }


class Codewords(Metric):
    def __init__(self, options: CodewordsOptions) -> None:
        self.options = options

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        samples = generate(self.options.samples)
        return codeword_statistics(codeword_counts(samples.reshape(len(samples), -1)))


def build_metric(options: CodewordsOptions, ctx: BuildContext) -> Codewords:
    return Codewords(options)

