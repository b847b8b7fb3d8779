"""R3GAN's generator and discriminator (Huang et al. 2024, section 4, config E), written for ganforge.

A ResNet without normalisation: every stage is a transition (G: a learned 4x4-style
basis, then bilinear-like upsampling; D: bilinear-like downsampling, then a
depthwise basis over the last map) and ``blocks`` residual blocks. A block is an
inverted bottleneck: a 1x1 convolution widening to ``expansion * width``, leaky
ReLU (0.2) with a bias, a grouped 3x3 convolution, leaky ReLU, a 1x1 convolution
back to ``width``, added to its input. Convolutions have no bias (the activations
hold them) and are initialised as R3GAN's are, fix-up style: N(0, gain / sqrt(fan_in))
with the leaky ReLU's gain scaled by ``L ** -1/4`` for ``L`` blocks in the network,
and each block's last convolution at 0, so every block starts as the identity.

Resampling is the [1, 3, 3, 1] binomial filter (R3GAN's [1, 2, 1] convolved with
[1, 1]) applied per channel, so upsampling is interpolation, not a learned
transposed convolution. Sides follow the dcgan plan: a base side of 4 to 7 doubled
until it covers S (28: 7 -> 14 -> 28; 32: 4 -> ... -> 32); G crops a larger map to S
and D resizes other sides to the plan's bilinearly, so any square side works.

Class-conditional (``num_classes > 0``), as R3GAN: G concatenates a class
embedding of ``z_dim`` dimensions to z, and D's last layer gives ``width``
features whose dot product with a class embedding (scaled by 1/sqrt(width)) is the logit.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge_core.layers import require_labels
from ganforge_r3gan.options import DiscriminatorOptions, GeneratorOptions, _NetworkOptions, resolution_plan

SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2 / (1 + SLOPE**2))
LAYERS_PER_BLOCK = 3


def _msr(layer: nn.Conv2d | nn.Linear, gain: float = 1.0) -> nn.Module:
    """He (MSR) init: N(0, gain / sqrt(fan_in)); biases (none here) at 0."""
    fan_in = layer.weight[0].numel()
    with torch.no_grad():
        layer.weight.normal_(0.0, gain / math.sqrt(fan_in))
    return layer


def _conv(c_in: int, c_out: int, kernel: int, gain: float = 1.0, groups: int = 1) -> nn.Module:
    return _msr(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False), gain)


class BiasedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype).view(1, -1, 1, 1), SLOPE)


class ResidualBlock(nn.Module):
    def __init__(self, options: _NetworkOptions, total_blocks: int) -> None:
        super().__init__()
        width, inner = options.width, options.width * options.expansion
        groups = inner // math.gcd(inner, options.group_channels)
        gain = ACTIVATION_GAIN * total_blocks ** (-1 / (2 * LAYERS_PER_BLOCK - 2))
        self.body = nn.Sequential(
            _conv(width, inner, 1, gain),
            BiasedLeakyReLU(inner),
            _conv(inner, inner, 3, gain, groups=groups),
            BiasedLeakyReLU(inner),
            _conv(inner, width, 1, gain=0.0),  # fix-up: the block starts as the identity
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _binomial_kernel() -> Tensor:
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum()


class Resample(nn.Module):
    """Doubles (``up``) or halves a map's side per channel with the [1, 3, 3, 1] binomial filter."""

    def __init__(self, up: bool) -> None:
        super().__init__()
        self.up = up
        self.register_buffer("kernel", _binomial_kernel()[None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        # One filter per channel (groups=c): a depthwise convolution keeps x's memory layout, where
        # folding the channels into the batch would copy a channels-last map out of it and back.
        c = x.shape[1]
        kernel = cast(Tensor, self.kernel).to(x.dtype).expand(c, 1, 4, 4)  # a buffer (nn.Module types it loosely)
        if self.up:  # zero-stuffing then the filter; x4 keeps the mean
            return F.conv_transpose2d(x, 4 * kernel, stride=2, padding=1, groups=c)
        return F.conv2d(x, kernel, stride=2, padding=1, groups=c)


def _blocks(options: _NetworkOptions, total: int) -> list[nn.Module]:
    return [ResidualBlock(options, total) for _ in range(options.blocks)]


class R3GANGenerator(nn.Module):
    def __init__(self, options: GeneratorOptions, channels: int, side: int, num_classes: int = 0) -> None:
        super().__init__()
        self.z_dim, self.side, self.width = options.z_dim, side, options.width
        self.base, doublings = resolution_plan(side)
        total = options.blocks * (doublings + 1)
        label_dim = options.z_dim if num_classes else 0
        self.embedding = (
            _msr(nn.Linear(num_classes, label_dim, bias=False)) if num_classes else None
        )
        # The generative basis: a learned base x base map per channel, scaled per sample by a linear map of z.
        self.basis = nn.Parameter(torch.randn(options.width, self.base, self.base))
        self.basis_scale = _msr(nn.Linear(options.z_dim + label_dim, options.width, bias=False))
        layers: list[nn.Module] = _blocks(options, total)
        for _ in range(doublings):
            layers += [Resample(up=True), *_blocks(options, total)]
        self.stages = nn.Sequential(*layers)
        self.output = _conv(options.width, channels, 1)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embedding is not None:
            classes = cast(int, self.embedding.in_features)
            one_hot = F.one_hot(require_labels(labels, "generator"), classes)
            z = torch.cat([z, self.embedding(one_hot.to(z.dtype))], dim=1)
        x = self.basis[None].to(z.dtype) * self.basis_scale(z)[:, :, None, None]
        x = self.output(self.stages(x))
        excess = x.shape[-1] - self.side
        if excess:
            start = excess // 2
            x = x[:, :, start : start + self.side, start : start + self.side]
        return x


class R3GANDiscriminator(nn.Module):
    def __init__(self, options: DiscriminatorOptions, channels: int, side: int, num_classes: int = 0) -> None:
        super().__init__()
        base, doublings = resolution_plan(side)
        self.side, self.planned = side, base * 2**doublings
        total = options.blocks * (doublings + 1)
        width = options.width
        self.input = _conv(channels, width, 1)
        layers: list[nn.Module] = []
        for _ in range(doublings):
            layers += [*_blocks(options, total), Resample(up=False)]
        layers += _blocks(options, total)
        self.stages = nn.Sequential(*layers)
        # The discriminative basis: a depthwise convolution over the whole base x base map.
        self.basis = _msr(nn.Conv2d(width, width, base, groups=width, bias=False))
        self.num_classes = num_classes
        self.output = _msr(nn.Linear(width, width if num_classes else 1, bias=False))
        self.embedding = (
            _msr(nn.Linear(num_classes, width, bias=False), gain=1 / math.sqrt(width)) if num_classes else None
        )

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.planned != self.side:
            x = F.interpolate(x, size=(self.planned, self.planned), mode="bilinear", align_corners=False)
        features = self.output(self.basis(self.stages(self.input(x))).flatten(1))
        if self.embedding is None:
            return features.flatten()
        one_hot = F.one_hot(require_labels(labels, "discriminator"), self.num_classes)
        return (features * self.embedding(one_hot.to(features.dtype))).sum(1)


__all__ = ["R3GANDiscriminator", "R3GANGenerator"]
