"""The Hamming(7,4) code: its 16 codewords, and which codeword (if any) a vector of signs spells.

Bits are written as signs: bit 1 is +1 and bit 0 is -1. A vector is read by the
sign of each value (a value of exactly 0 reads as bit 0). The code is systematic:
codeword ``i`` starts with the four data bits of ``i`` (most significant first),
followed by three parity bits.
"""

from __future__ import annotations

import torch
from torch import Tensor

LENGTH = 7
WORDS = 16
NOT_A_CODEWORD = WORDS  # the index classify gives a vector that is no codeword

# G = [I_4 | P]: parity bits d1+d2+d4, d1+d3+d4, d2+d3+d4 (mod 2).
GENERATOR = (
    (1, 0, 0, 0, 1, 1, 0),
    (0, 1, 0, 0, 1, 0, 1),
    (0, 0, 1, 0, 0, 1, 1),
    (0, 0, 0, 1, 1, 1, 1),
)
_PLACES = 2 ** torch.arange(LENGTH - 1, -1, -1)  # bit vector -> integer, first bit most significant


def codeword_bits() -> Tensor:
    """The 16 codewords as 0/1 integers, ``[16, 7]``; row ``i`` encodes the data bits of ``i``."""
    data = (torch.arange(WORDS)[:, None] >> torch.arange(3, -1, -1)) & 1
    return (data @ torch.tensor(GENERATOR)) % 2


def as_signs(bits: Tensor) -> Tensor:
    """0/1 bits as float32 -1/+1 values."""
    return bits.float() * 2 - 1


def classify(samples: Tensor) -> Tensor:
    """For ``[N, 7]`` samples: the codeword each one's signs spell (0..15), or ``NOT_A_CODEWORD``."""
    keys = (samples > 0).long() @ _PLACES
    lookup = torch.full((2**LENGTH,), NOT_A_CODEWORD, dtype=torch.long)
    lookup[codeword_bits() @ _PLACES] = torch.arange(WORDS)
    return lookup[keys]


def codeword_counts(samples: Tensor) -> Tensor:
    """How many of ``samples`` ([N, 7]) spell each codeword; entry 16 counts the rest. Shape ``[17]``."""
    return torch.bincount(classify(samples), minlength=WORDS + 1)


def spelling(index: int) -> str:
    """Codeword ``index`` written as its seven bits, ``"0001111"``."""
    return "".join(str(int(bit)) for bit in codeword_bits()[index])
