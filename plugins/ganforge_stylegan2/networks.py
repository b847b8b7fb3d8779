"""StyleGAN2's generator and residual discriminator (Karras et al. 2020), after stylegan2-ada-pytorch.

Generator: a mapping network z -> w (``z`` normalised to unit second moment, fully
connected leaky-ReLU layers at a learning-rate multiplier of 0.01), then the
synthesis network: a learned constant of side ``start`` (4; 5 to 7 for sides such
as 28 = 7 * 4), one block per doubling (bilinear upsample, two modulated 3x3
convolutions with per-pixel noise of a learned strength and a bias), each block
adding its toRGB (a modulated 1x1 convolution without demodulation) to the
upsampled image so far: the "skip" architecture. Layer ``i`` is driven by its own
copy of w (``ws[:, i]``); in training, style mixing drives the layers from a
per-sample cutoff on with the w of a second latent. The output is linear, as in
StyleGAN2. In eval mode (samples, metrics) the noise is a fixed buffer per layer
(stylegan2-ada's ``noise_mode='const'``), so samples are a function of z alone,
and ``truncation_psi`` pulls w toward ``w_avg``, the running mean of w over the
training batches (decay ``w_avg_beta``).

Discriminator: stylegan2-ada's "resnet" architecture: fromRGB (1x1), one residual
block per halving (two 3x3 convolutions, a 1x1 shortcut, both scaled by
sqrt(1/2)), then the epilogue at side ``start``: minibatch standard deviation,
a 3x3 convolution, a fully connected layer and the logit.

Differences from the NVlabs code, for pure PyTorch: resampling is bilinear up and
2x2 average pooling down, not the [1, 3, 3, 1] FIR filter through upfirdn2d; no
fp16 paths, clamping or custom CUDA ops; unconditional only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ganforge_stylegan2.layers import EqualConv2d, EqualLinear, downsample, lrelu, modulated_conv2d, upsample
from ganforge_stylegan2.options import DiscriminatorOptions, GeneratorOptions, start_and_doublings

SQRT_HALF = math.sqrt(0.5)


class MappingNetwork(nn.Module):
    """z -> w, and ``w_avg``, the running mean of w over training forward passes (a running statistic)."""

    running_statistics = ("w_avg",)  # moved by training-mode forward passes only, as BatchNorm's are
    w_avg: Tensor

    def __init__(self, options: GeneratorOptions) -> None:
        super().__init__()
        dims = [options.z_dim] + [options.w_dim] * options.mapping_layers
        self.layers = nn.Sequential(
            *(
                EqualLinear(a, b, lr_multiplier=options.mapping_lr_multiplier, activation=True)
                for a, b in zip(dims[:-1], dims[1:], strict=True)
            )
        )
        self.w_avg_beta = options.w_avg_beta
        self.register_buffer("w_avg", torch.zeros(options.w_dim))

    def forward(self, z: Tensor, *, track: bool = True) -> Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        w = self.layers(z)
        if self.training and track:
            self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return w


class SynthesisLayer(nn.Module):
    """A modulated, demodulated 3x3 convolution (after a 2x upsample if ``up``), noise, bias, leaky ReLU."""

    noise_const: Tensor

    def __init__(self, c_in: int, c_out: int, w_dim: int, side: int, *, up: bool) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(side, side))
        self.up, self.side = up, side

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        if self.up:
            x = upsample(x)
        x = modulated_conv2d(x, self.weight, self.affine(w), demodulate=True, padding=1, fused=not self.training)
        if self.training:
            noise = torch.randn(x.shape[0], 1, self.side, self.side, device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        x = x + noise * self.noise_strength
        return lrelu(x + self.bias.reshape(1, -1, 1, 1).to(x.dtype))


class ToRGB(nn.Module):
    """A modulated 1x1 convolution without demodulation, plus a bias: one block's image."""

    def __init__(self, c_in: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, c_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1 / math.sqrt(c_in)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=not self.training)
        return x + self.bias.reshape(1, -1, 1, 1).to(x.dtype)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images; block ``b`` reads ``ws[:, i : i + convs + 1]`` (its toRGB shares
    the next block's first w, as in stylegan2-ada)."""

    def __init__(self, options: GeneratorOptions, channels: int, start: int, doublings: int) -> None:
        super().__init__()
        width, w_dim = options.width, options.w_dim
        self.const = nn.Parameter(torch.randn(width, start, start))
        sides = [start * 2**i for i in range(doublings + 1)]
        first = nn.ModuleList([SynthesisLayer(width, width, w_dim, start, up=False)])
        self.convs = nn.ModuleList(
            [first]
            + [
                nn.ModuleList([SynthesisLayer(width, width, w_dim, side, up=True),
                               SynthesisLayer(width, width, w_dim, side, up=False)])
                for side in sides[1:]
            ]
        )
        self.to_rgb = nn.ModuleList(ToRGB(width, channels, w_dim) for _ in sides)
        self.num_ws = 1 + 2 * doublings + 1  # the first block's conv, two per doubling, the last toRGB

    def forward(self, ws: Tensor) -> Tensor:
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        image: Tensor | None = None
        index = 0
        for layers, to_rgb in zip(self.convs, self.to_rgb, strict=True):
            assert isinstance(layers, nn.ModuleList)
            for layer in layers:
                x = layer(x, ws[:, index])
                index += 1
            rgb = to_rgb(x, ws[:, index])
            image = rgb if image is None else upsample(image) + rgb
        assert image is not None
        return image


class StyleGAN2Generator(nn.Module):
    def __init__(self, options: GeneratorOptions, channels: int, side: int) -> None:
        super().__init__()
        found = start_and_doublings(side)
        assert found is not None, f"side {side} is not start * 2**k"
        self.z_dim, self.w_dim = options.z_dim, options.w_dim
        self.style_mixing = options.style_mixing
        self.truncation_psi = options.truncation_psi  # a plain attribute: may be changed before sampling
        self.mapping = MappingNetwork(options)
        self.synthesis = SynthesisNetwork(options, channels, *found)
        self.num_ws = self.synthesis.num_ws

    @property
    def w_avg(self) -> Tensor:
        return self.mapping.w_avg

    def styles(self, z: Tensor) -> Tensor:
        """ws [N, num_ws, w_dim] for latents z: style mixing in training, truncation in eval mode."""
        w = self.mapping(z)
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        if self.training and self.style_mixing > 0:
            other = self.mapping(torch.randn_like(z), track=False).unsqueeze(1)
            n = z.shape[0]
            cutoff = torch.randint(1, self.num_ws, (n, 1), device=z.device)
            mixed = torch.rand(n, 1, device=z.device) < self.style_mixing
            later = torch.arange(self.num_ws, device=z.device).unsqueeze(0) >= cutoff
            ws = torch.where((mixed & later).unsqueeze(-1), other, ws)
        elif not self.training and self.truncation_psi != 1:
            ws = self.w_avg.to(ws.dtype).lerp(ws, self.truncation_psi)
        return ws

    def forward(
        self, z: Tensor, labels: Tensor | None = None, *, return_ws: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Images for latents z; with ``return_ws``, also the ws that drove them (path-length regularization)."""
        ws = self.styles(z)
        images = self.synthesis(ws)
        return (images, ws) if return_ws else images


def minibatch_std(x: Tensor, group: int) -> Tensor:
    """x with one more channel: the std of each feature over a group of samples, averaged (StyleGAN, Karras 2018).

    The group is the largest divisor of the batch up to ``group``; group ``g`` holds samples ``j, j + n, ...``.
    """
    n, c, h, w = x.shape
    size = max(d for d in range(1, min(group, n) + 1) if n % d == 0)
    y = x.reshape(size, -1, c, h, w).float()
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # [n / size]
    y = y.reshape(-1, 1, 1, 1).repeat(size, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(width, width, 3)
        self.conv1 = EqualConv2d(width, width, 3)
        self.skip = EqualConv2d(width, width, 1, bias=False, activation=False)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(downsample(x), gain=SQRT_HALF)
        return skip + self.conv1(downsample(self.conv0(x)), gain=SQRT_HALF)


class StyleGAN2Discriminator(nn.Module):
    def __init__(self, options: DiscriminatorOptions, channels: int, side: int) -> None:
        super().__init__()
        found = start_and_doublings(side)
        assert found is not None, f"side {side} is not start * 2**k"
        start, doublings = found
        width = options.width
        self.group = options.mbstd_group
        self.from_rgb = EqualConv2d(channels, width, 1)
        self.blocks = nn.Sequential(*(DiscriminatorBlock(width) for _ in range(doublings)))
        self.conv = EqualConv2d(width + 1, width, 3)
        self.fc = EqualLinear(width * start * start, width, activation=True)
        self.out = EqualLinear(width, 1)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        x = self.blocks(self.from_rgb(x))
        x = self.conv(minibatch_std(x, self.group))
        return self.out(self.fc(x.flatten(1))).flatten()
