"""DCGAN networks for square images of side S >= 8 with C channels.

The generator starts from a ``base x base`` map (4 <= base <= 7) and doubles it
with stride-2 transposed convolutions until it covers S, then centre-crops to S
(S = 28: 7 -> 14 -> 28; S = 64: 4 -> ... -> 64; S = 30: 4 -> ... -> 32, cropped).
The discriminator halves with stride-2 convolutions while the map is larger than
7 and ends with one convolution over the whole remaining map.

Initialisation (``init``): ``dcgan``, as published (Radford et al. 2016, section 4):
conv weights N(0, 0.02), normalisation gains N(1, 0.02), biases 0; ``pytorch``
keeps PyTorch's default layer initialisation (what ganforge used before).

Class-conditional variants (``num_classes > 0``): every BatchNorm of G is a
conditional BatchNorm (a per-class gain and bias, as in SN-GAN's and BigGAN's
generators), and a small learned class embedding (a tenth of z's width, see
:func:`label_width`) is appended to z; D is a projection discriminator (Miyato &
Koyama 2018), whose final convolution over the whole map is the linear psi and
whose features phi(x) are that map, flattened. Measured on mnist-5k
(docs/benchmarks.md): an embedding as wide as z, as G had before, gave one image
per class, with or without conditional BatchNorm; conditional BatchNorm alone left
the label unused for the first 300 steps; both together, with the small embedding,
drew varied digits of the class asked for. Unconditional networks have the layers
and parameters they always had, so their checkpoints load.
"""

from __future__ import annotations

from torch import Tensor, nn

from ganforge_core.layers import ClassBatchNorm2d, ClassProjection, LabelEmbedding
from ganforge_dcgan.options import DiscriminatorOptions, GeneratorOptions

CONV_STD, GAIN_STD = 0.02, 0.02


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.'s initialisation of one layer (for ``Module.apply``): convs N(0, 0.02), norms N(1, 0.02).

    Biases are zeroed. Other layers (a projection's linear, class embeddings) keep theirs.
    """
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, CONV_STD)
    elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, GAIN_STD)
    else:
        return
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def upsampling_plan(size: int) -> tuple[int, int]:
    """(base, doublings) with 4 <= base <= 7 and base * 2**doublings >= size."""
    doublings = 0
    while -(-size // 2**doublings) > 7:
        doublings += 1
    return max(4, -(-size // 2**doublings)), doublings


def label_width(num_classes: int, z_dim: int) -> int:
    """Dimensions of the class embedding a conditional G appends to z: a tenth of z's (at least 1, at most one
    per class). As wide as z (ganforge's first conditional dcgan), the label drowned z: one image per class."""
    return max(1, min(num_classes, z_dim // 10)) if num_classes else 0


class DCGANGenerator(nn.Module):
    def __init__(self, options: GeneratorOptions, channels: int, size: int, num_classes: int = 0) -> None:
        super().__init__()
        self.z_dim = options.z_dim
        self.size = size
        base, doublings = upsampling_plan(size)
        widths = [options.width * 2 ** (doublings - 1 - i) for i in range(doublings)] or [options.width]
        label_dim = label_width(num_classes, options.z_dim)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(options.z_dim + label_dim, widths[0], base, 1, 0, bias=False),
            ClassBatchNorm2d(widths[0], num_classes),
            nn.ReLU(inplace=True),
        ]
        for w_in, w_out in zip(widths, widths[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False),
                ClassBatchNorm2d(w_out, num_classes),
                nn.ReLU(inplace=True),
            ]
        if doublings:
            layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        else:
            layers += [nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        if options.init == "dcgan":
            self.apply(dcgan_init)
        self.label_embedding = LabelEmbedding(num_classes, label_dim) if num_classes else None

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.label_embedding is not None:
            z = self.label_embedding.concat(z, labels)
        x = z[:, :, None, None]
        for layer in self.net:
            x = layer(x, labels) if isinstance(layer, ClassBatchNorm2d) else layer(x)
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
        if options.init == "dcgan":
            self.apply(dcgan_init)
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


__all__ = ["DCGANDiscriminator", "DCGANGenerator", "dcgan_init", "label_width", "upsampling_plan"]
