"""SN-GAN residual networks (Miyato et al. 2018, appendix) for square images of side 4 * 2**k.

Generator: a linear layer to a ``width x 4 x 4`` map, one upsampling residual
block per doubling (BatchNorm, ReLU, nearest upsample, 3x3 convs; a 1x1 conv on
the upsampled shortcut), then BatchNorm, ReLU, a 3x3 conv and tanh. At 32 px
this is SN-GAN's CIFAR-10 generator (three blocks).

Discriminator: an optimized first block (conv, ReLU, conv, avg-pool; shortcut
avg-pool then 1x1 conv), downsampling blocks until the map is 8x8 (4x4 for 8 px
images), two blocks without downsampling, ReLU, global sum pooling and a
linear layer. No normalisation, so it suits gradient penalties and spectral
norm. At 32 px this is SN-GAN's CIFAR-10 discriminator (four blocks).

Every block has ``width`` channels, as in SN-GAN's 32 px models. Initialisation
follows SN-GAN: Glorot-uniform with gain sqrt(2) on residual convs, gain 1 on
shortcuts and the input and output layers, zero biases.

Class-conditional variants (``num_classes > 0``, Miyato & Koyama 2018): G's
block BatchNorms take a per-class gain and bias (conditional BatchNorm); D adds
the projection ``<embed(y), phi(x)>`` of its pooled features to the logit.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from ganforge_core.layers import ClassBatchNorm2d, ClassProjection, require_labels
from ganforge_resnet.options import DiscriminatorOptions, GeneratorOptions, doublings

RESIDUAL_GAIN = math.sqrt(2)


def _conv(c_in: int, c_out: int, kernel: int, gain: float) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    assert conv.bias is not None  # Conv2d's bias=True default
    nn.init.zeros_(conv.bias)
    return conv


def _upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, num_classes: int) -> None:
        super().__init__()
        self.norm1 = ClassBatchNorm2d(c_in, num_classes)
        self.conv1 = _conv(c_in, c_out, 3, RESIDUAL_GAIN)
        self.norm2 = ClassBatchNorm2d(c_out, num_classes)
        self.conv2 = _conv(c_out, c_out, 3, RESIDUAL_GAIN)
        self.shortcut = _conv(c_in, c_out, 1, 1.0)

    def forward(self, x: Tensor, labels: Tensor | None) -> Tensor:
        h = self.conv1(_upsample(F.relu(self.norm1(x, labels))))
        h = self.conv2(F.relu(self.norm2(h, labels)))
        return h + self.shortcut(_upsample(x))


class DownBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3, RESIDUAL_GAIN)
        self.conv2 = _conv(c_out, c_out, 3, RESIDUAL_GAIN)
        self.downsample = downsample
        self.shortcut = _conv(c_in, c_out, 1, 1.0) if downsample or c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        skip = x if self.shortcut is None else self.shortcut(x)
        if self.downsample:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return h + skip


class OptimizedDownBlock(nn.Module):
    """The first D block: no ReLU before its first conv, and the shortcut pools before its 1x1 conv."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3, RESIDUAL_GAIN)
        self.conv2 = _conv(c_out, c_out, 3, RESIDUAL_GAIN)
        self.shortcut = _conv(c_in, c_out, 1, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class ResNetGenerator(nn.Module):
    def __init__(self, options: GeneratorOptions, channels: int, side: int, num_classes: int = 0) -> None:
        super().__init__()
        k = doublings(side)
        assert k is not None, f"side {side} is not 4 * 2**k"
        self.z_dim, self.width, self.conditional = options.z_dim, options.width, num_classes > 0
        self.input = nn.Linear(options.z_dim, 16 * options.width)
        nn.init.xavier_uniform_(self.input.weight)
        nn.init.zeros_(self.input.bias)
        self.blocks = nn.ModuleList(UpBlock(options.width, options.width, num_classes) for _ in range(k))
        self.output_norm = nn.BatchNorm2d(options.width)
        self.output = _conv(options.width, channels, 3, 1.0)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.conditional:
            labels = require_labels(labels, "generator")
        h = self.input(z).view(-1, self.width, 4, 4)
        for block in self.blocks:
            h = block(h, labels)
        return self.output(F.relu(self.output_norm(h))).tanh()


class ResNetDiscriminator(nn.Module):
    def __init__(self, options: DiscriminatorOptions, channels: int, side: int, num_classes: int = 0) -> None:
        super().__init__()
        k = doublings(side)
        assert k is not None, f"side {side} is not 4 * 2**k"
        width = options.width
        downsampling = [DownBlock(width, width, downsample=True) for _ in range(k - 2)]
        self.blocks = nn.Sequential(
            OptimizedDownBlock(channels, width),
            *downsampling,
            DownBlock(width, width, downsample=False),
            DownBlock(width, width, downsample=False),
        )
        self.output = nn.Linear(width, 1)
        nn.init.xavier_uniform_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        self.projection = ClassProjection(num_classes, width) if num_classes else None

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        features = F.relu(self.blocks(x)).sum(dim=(2, 3))
        logits = self.output(features).flatten()
        if self.projection is None:
            return logits
        return logits + self.projection(features, labels)


__all__ = ["DiscriminatorOptions", "GeneratorOptions", "ResNetDiscriminator", "ResNetGenerator", "doublings"]
