"""DCGAN networks for square images of side S >= 8 with C channels.

The generator starts from a ``base x base`` map (4 <= base <= 7) and doubles it
with stride-2 transposed convolutions until it covers S, then centre-crops to S
(S = 28: 7 -> 14 -> 28; S = 64: 4 -> ... -> 64; S = 30: 4 -> ... -> 32, cropped).
The discriminator halves with stride-2 convolutions while the map is larger than
7 and ends with one convolution over the whole remaining map.

Class-conditional variants (``num_classes > 0``): G concatenates a learned class
embedding of ``z_dim`` dimensions to z; D is a projection discriminator (Miyato &
Koyama 2018), whose final convolution over the whole map is the linear psi and
whose features phi(x) are that map, flattened. Unconditional networks have
exactly the layers, parameters and initialisation they always had.
"""

from __future__ import annotations

from torch import Tensor, nn

from ganforge_core.layers import ClassProjection, LabelEmbedding
from ganforge_dcgan.options import DiscriminatorOptions, GeneratorOptions


def upsampling_plan(size: int) -> tuple[int, int]:
    """(base, doublings) with 4 <= base <= 7 and base * 2**doublings >= size."""
    doublings = 0
    while -(-size // 2**doublings) > 7:
        doublings += 1
    return max(4, -(-size // 2**doublings)), doublings


class DCGANGenerator(nn.Module):
    def __init__(self, options: GeneratorOptions, channels: int, size: int, num_classes: int = 0) -> None:
        super().__init__()
        self.z_dim = options.z_dim
        self.size = size
        base, doublings = upsampling_plan(size)
        widths = [options.width * 2 ** (doublings - 1 - i) for i in range(doublings)] or [options.width]
        label_dim = options.z_dim if num_classes else 0
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(options.z_dim + label_dim, widths[0], base, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for w_in, w_out in zip(widths, widths[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(w_out),
                nn.ReLU(inplace=True),
            ]
        if doublings:
            layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        else:
            layers += [nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.label_embedding = LabelEmbedding(num_classes, label_dim) if num_classes else None

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.label_embedding is not None:
            z = self.label_embedding.concat(z, labels)
        x = self.net(z[:, :, None, None])
        excess = x.shape[-1] - self.size
        if excess:
            start = excess // 2
            x = x[:, :, start : start + self.size, start : start + self.size]
        return x


class DCGANDiscriminator(nn.Module):
    def __init__(self, options: DiscriminatorOptions, channels: int, size: int, num_classes: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in, width, side, first = channels, options.width, size, True
        while side > 7:
            side //= 2
            layers.append(nn.Conv2d(width_in, width, 4, 2, 1, bias=first or options.norm == "none"))
            if not first:
                layers.append(_norm(options.norm, width, side))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width_in, width, first = width, width * 2, False
        layers.append(nn.Conv2d(width_in, 1, side, 1, 0))
        self.net = nn.Sequential(*layers)
        self.projection = ClassProjection(num_classes, width_in * side * side) if num_classes else None

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.projection is None:
            return self.net(x).flatten()
        features = self.net[:-1](x)
        return self.net[-1](features).flatten() + self.projection(features.flatten(1), labels)


def _norm(kind: str, channels: int, side: int) -> nn.Module:
    if kind == "batch":
        # Batch statistics only: a GAN discriminator is never run in eval mode,
        # and without running buffers a forward pass changes no state.
        return nn.BatchNorm2d(channels, track_running_stats=False)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


__all__ = ["DCGANDiscriminator", "DCGANGenerator", "upsampling_plan"]
