"""StyleGAN2's building blocks in plain PyTorch: equalized-lr layers and the modulated convolution.

Equalized learning rate (Karras et al. 2018): every weight is stored as N(0, 1) /
lr_multiplier and scaled at run time by ``lr_multiplier / sqrt(fan_in)``, so Adam's
steps are the same size for every layer. The modulated convolution is
stylegan2-ada-pytorch's ``modulated_conv2d``: in its grouped form (the whole batch as one
grouped convolution, one group per sample) in eval mode, and with the styles and
demodulation around one shared convolution in training, as there; no custom CUDA ops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_GAIN = math.sqrt(2)  # leaky ReLU(0.2) followed by this gain keeps the activations' scale (stylegan2-ada)


def lrelu(x: Tensor, gain: float = 1.0) -> Tensor:
    return F.leaky_relu(x, 0.2) * (LRELU_GAIN * gain)


def demodulation(weight: Tensor, styles: Tensor) -> Tensor:
    """[N, O]: ``1 / sqrt(sum_ik (s_i w_oik)^2 + 1e-8)`` (StyleGAN2, eq. 3), without forming the per-sample weights."""
    return torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).T + 1e-8)


def modulated_weights(weight: Tensor, styles: Tensor, *, demodulate: bool = True) -> Tensor:
    """Each sample's weight [N, O, I, k, k]: ``s_i * w_oi`` for ``weight`` [O, I, k, k] and ``styles`` [N, I],
    demodulated so that every output channel's weight has unit norm."""
    w = weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, -1, 1, 1)
    return w * demodulation(weight, styles).reshape(*w.shape[:2], 1, 1, 1) if demodulate else w


def modulated_conv2d(
    x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool = True, padding: int = 0, fused: bool = True
) -> Tensor:
    """Convolve sample ``i`` of ``x`` [N, I, H, W] with its own :func:`modulated_weights`.

    ``fused``: the batch runs as one convolution with ``groups=N`` and a weight per sample; otherwise
    (stylegan2-ada in training) the styles scale the input channels and the demodulation the output
    channels around one shared convolution: the same operation.
    """
    n, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    if not fused:
        out = F.conv2d(x * styles.reshape(n, channels, 1, 1), weight, padding=padding)
        return out * demodulation(weight, styles).reshape(n, out_channels, 1, 1) if demodulate else out
    w = modulated_weights(weight, styles, demodulate=demodulate)
    out = F.conv2d(
        x.reshape(1, n * channels, height, width), w.reshape(n * out_channels, channels, kh, kw),
        padding=padding, groups=n,
    )
    return out.reshape(n, out_channels, *out.shape[2:])


class EqualLinear(nn.Module):
    """A fully connected layer with equalized learning rate; ``bias_init`` 1 for the style affines."""

    def __init__(
        self, c_in: int, c_out: int, *, lr_multiplier: float = 1.0, bias_init: float = 0.0, activation: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((c_out,), float(bias_init)))
        self.weight_gain, self.bias_gain = lr_multiplier / math.sqrt(c_in), lr_multiplier
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """A convolution with equalized learning rate (D's layers), 'same' padding, optional bias and leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, bias: bool = True, activation: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1 / math.sqrt(c_in * kernel * kernel)
        self.activation = activation

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)
        return lrelu(x, gain) if self.activation else x * gain


def upsample(x: Tensor) -> Tensor:
    """2x bilinear upsampling: the [1, 3, 3, 1] filter stylegan2-ada applies after zero insertion."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample(x: Tensor) -> Tensor:
    """2x downsampling by 2x2 averages (stylegan2-ada filters with [1, 3, 3, 1] before striding)."""
    return F.avg_pool2d(x, 2)
