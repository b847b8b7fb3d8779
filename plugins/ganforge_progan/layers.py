"""ProGAN's layers (Karras et al. 2018, section 4): equalized learning rate, pixel norm, minibatch std.

* :class:`EqualizedConv2d` / :class:`EqualizedLinear`: weights drawn from N(0, 1)
  and multiplied *at run time* by He's constant ``gain / sqrt(fan_in)`` (gain
  sqrt(2) but where ProGAN uses another), so Adam's per-parameter step size acts
  on every layer alike. They subclass ``nn.Conv2d`` and ``nn.Linear``, so the
  ``spectral-norm`` regularizer finds and normalises their weights too.
* :class:`PixelNorm`: each pixel's feature vector divided by its RMS over channels.
* :class:`MinibatchStd`: one more feature map, the standard deviation of each feature
  over a group of samples, averaged over features and pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HE_GAIN = math.sqrt(2)
EPSILON = 1e-8


class EqualizedConv2d(nn.Conv2d):
    """A stride-1 'same' convolution whose weight is scaled by ``gain / sqrt(c_in * k * k)`` in each forward pass."""

    def __init__(self, c_in: int, c_out: int, kernel: int, gain: float = HE_GAIN) -> None:
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        nn.init.normal_(self.weight)
        assert self.bias is not None  # Conv2d's bias=True default
        nn.init.zeros_(self.bias)
        self.scale = gain / math.sqrt(c_in * kernel * kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.scale, self.bias)


class EqualizedLinear(nn.Linear):
    """A linear layer whose weight is scaled by ``gain / sqrt(in_features)`` in each forward pass."""

    def __init__(self, c_in: int, c_out: int, gain: float = HE_GAIN) -> None:
        super().__init__(c_in, c_out)
        nn.init.normal_(self.weight)
        nn.init.zeros_(self.bias)
        self.scale = gain / math.sqrt(c_in)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """``x / sqrt(mean over channels of x**2 + 1e-8)`` at every pixel (dim 1 is the channels)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + EPSILON)


def group_of(batch: int, group_size: int) -> int:
    """The largest divisor of ``batch`` that is at most ``group_size``."""
    return max(g for g in range(1, min(group_size, batch) + 1) if batch % g == 0)


class MinibatchStd(nn.Module):
    """Appends one feature map: per group of samples, the standard deviation of every feature at every
    pixel over the group (biased, plus 1e-8 under the root), averaged to one number per group.

    As ProGAN's code groups them, sample ``i`` of a batch of ``N`` split into groups of ``G`` belongs to
    group ``i % (N / G)``. With a group of one sample the map is ``sqrt(1e-8)``.
    """

    def __init__(self, group_size: int) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = group_of(n, self.group_size)
        y = x.reshape(g, -1, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(EPSILON).sqrt()  # [N / G, C, H, W]
        y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # sample i gets group i % (N / G)
        return torch.cat([x, y.to(x.dtype)], dim=1)


def leaky(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2)


def upsample(x: Tensor, factor: int) -> Tensor:
    """Nearest-neighbour upsampling by an integer factor (every pixel copied, so exact)."""
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def halve(x: Tensor) -> Tensor:
    """2x2 average pooling."""
    return F.avg_pool2d(x, 2)
