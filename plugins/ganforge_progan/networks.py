"""ProGAN's generator and discriminator (Karras et al. 2018), grown from 4x4 by resolution stages.

Stage ``s`` works at ``4 * 2**s`` pixels; the last stage at the working side
(:func:`~ganforge_progan.options.working_side`). Both networks hold every stage's
layers from the start and run those of their current stage, which
:meth:`GrowingNetwork.grow` sets from the step (``ganforge_core.Growing``); they are
built in their last stage, whole.

**Shapes never change.** G always returns samples of the data's shape: its
current stage's image is upsampled (nearest neighbour) to the working side, then
cropped to the data's size from the centre. D always takes samples of the data's
shape: it pads them to the working side with -1 (black in [-1, 1]) around, then
halves them (2x2 average pooling) down to its current stage's side. So the
engine, the batches and every regularizer see the same shapes all run long, and
28x28 MNIST trains at 32x32 (2 pixels of padding each side).

**Fade-in.** While stage ``s`` fades in, with weight ``alpha`` rising from 0 to 1:
G's image is ``(1 - alpha) * upsample2(toRGB[s-1](h[s-1])) + alpha * toRGB[s](h[s])``
and D's features at stage ``s - 1`` are ``(1 - alpha) * fromRGB[s-1](halve(x[s]))
+ alpha * block[s](fromRGB[s](x[s]))``. At alpha 0 the output is exactly that of
stage ``s - 1``, at alpha 1 exactly that of stage ``s``. ``alpha`` is a tensor
(a buffer, not saved: it is a function of the step), written in place by
``grow``, so a CUDA graph captured during a fade reads each step's value.

G: latent pixel-normed, an equalized dense layer (gain sqrt(2)/4) to 4x4, a 3x3
conv, then per stage nearest upsampling and two 3x3 convs, each followed by
leaky ReLU (0.2) and pixel norm; toRGB is a 1x1 conv (gain 1) with a linear
output, as in ProGAN. D: fromRGB is a 1x1 conv and leaky ReLU; per stage two 3x3
convs and 2x2 average pooling; at 4x4 the minibatch standard deviation, a 3x3
conv, a dense layer and the linear logit. Every layer has an equalized learning rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge_progan.layers import (
    HE_GAIN,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStd,
    PixelNorm,
    halve,
    leaky,
    upsample,
)
from ganforge_progan.options import (
    DiscriminatorOptions,
    GeneratorOptions,
    Growth,
    stage_count,
    widths,
    working_side,
)


class GrowingNetwork(nn.Module):
    """The stage, the fade-in weight and the schedule both networks share."""

    alpha: Tensor

    def __init__(self, shape: tuple[int, ...], growth_of: GeneratorOptions | DiscriminatorOptions) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.side = working_side(self.shape)
        self.growth = Growth.of(growth_of, stage_count(self.side))
        self.stage, self.fading = self.growth.stages - 1, False
        self.register_buffer("alpha", torch.ones(()), persistent=False)

    def grow(self, step: int, total_steps: int) -> tuple[int, bool]:
        """Take the stage and alpha of G step ``step`` (:meth:`Growth.at`); the key is (stage, fading)."""
        self.set_stage(*self.growth.at(step, total_steps))
        return self.stage, self.fading

    def set_stage(self, stage: int, alpha: float = 1.0) -> None:
        """Run stage ``stage``, fading in with weight ``alpha`` while it is below 1 (stage 0 never fades)."""
        if not 0 <= stage < self.growth.stages:
            raise ValueError(f"stage {stage} is not one of this network's {self.growth.stages} stages")
        self.stage, self.fading = stage, stage > 0 and alpha < 1
        self.alpha.fill_(alpha)

    def blend(self, old: Tensor, new: Tensor) -> Tensor:
        """``(1 - alpha) * old + alpha * new``: exactly ``old`` at alpha 0 and ``new`` at alpha 1."""
        return old * (1 - self.alpha) + new * self.alpha

    def reaching_every_parameter(self, out: Tensor) -> Tensor:
        """``out`` plus 0 times every parameter: the layers of the other stages get a gradient of exactly 0,
        as stylegan2-ada's ``* 0`` terms give them, so Adam steps every parameter together (a future
        stage's moments stay 0, its weights unchanged) and DDP finds every gradient it waits for."""
        return out + 0 * torch.stack([p.sum() for p in self.parameters()]).sum().to(out.dtype)

    def _margins(self) -> tuple[int, int, int, int]:
        """Left, right, top and bottom padding from the data's size to the working side."""
        (height, width), side = self.shape[1:], self.side
        left, top = (side - width) // 2, (side - height) // 2
        return left, side - width - left, top, side - height - top


class GBlock(nn.Module):
    """Nearest 2x upsampling, then two 3x3 convs, each with leaky ReLU and pixel norm."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(c_in, c_out, 3)
        self.conv2 = EqualizedConv2d(c_out, c_out, 3)
        self.norm = PixelNorm()

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(leaky(self.conv1(upsample(x, 2))))
        return self.norm(leaky(self.conv2(x)))


class DBlock(nn.Module):
    """Two 3x3 convs with leaky ReLU, then 2x2 average pooling."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(c_in, c_in, 3)
        self.conv2 = EqualizedConv2d(c_in, c_out, 3)

    def forward(self, x: Tensor) -> Tensor:
        return halve(leaky(self.conv2(leaky(self.conv1(x)))))


class ProGANGenerator(GrowingNetwork):
    def __init__(self, options: GeneratorOptions, shape: tuple[int, ...]) -> None:
        super().__init__(shape, options)
        stages = self.growth.stages
        self.z_dim = options.z_dim
        self.widths = widths(options.width, stages)
        first = self.widths[0]
        self.norm = PixelNorm()
        self.input = EqualizedLinear(options.z_dim, first * 16, gain=HE_GAIN / 4)
        self.input_conv = EqualizedConv2d(first, first, 3)
        self.blocks = nn.ModuleList(GBlock(self.widths[s - 1], self.widths[s]) for s in range(1, stages))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(w, self.shape[0], 1, gain=1.0) for w in self.widths)

    def forward(self, z: Tensor) -> Tensor:
        h = self.norm(leaky(self.input(self.norm(z))).view(-1, self.widths[0], 4, 4))
        h = self.norm(leaky(self.input_conv(h)))
        previous = h
        for block in self.blocks[: self.stage]:
            previous, h = h, block(h)
        image = self.to_rgb[self.stage](h)
        if self.fading:
            image = self.blend(upsample(self.to_rgb[self.stage - 1](previous), 2), image)
        image = upsample(image, self.side >> (self.stage + 2))
        left, _, top, _ = self._margins()
        return self.reaching_every_parameter(image[:, :, top : top + self.shape[1], left : left + self.shape[2]])


class ProGANDiscriminator(GrowingNetwork):
    def __init__(self, options: DiscriminatorOptions, shape: tuple[int, ...]) -> None:
        super().__init__(shape, options)
        stages = self.growth.stages
        self.widths = widths(options.width, stages)
        first = self.widths[0]
        self.from_rgb = nn.ModuleList(EqualizedConv2d(self.shape[0], w, 1) for w in self.widths)
        # blocks[s - 1] takes stage s's features down to stage s - 1's side and width.
        self.blocks = nn.ModuleList(DBlock(self.widths[s], self.widths[s - 1]) for s in range(1, stages))
        self.std = MinibatchStd(options.group_size)
        self.final_conv = EqualizedConv2d(first + 1, first, 3)
        self.final_dense = EqualizedLinear(first * 16, first)
        self.output = EqualizedLinear(first, 1, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, self._margins(), value=-1.0)
        for _ in range(self.growth.stages - 1 - self.stage):
            x = halve(x)
        h = leaky(self.from_rgb[self.stage](x))
        if self.stage > 0:
            h = self.blocks[self.stage - 1](h)
            if self.fading:
                h = self.blend(leaky(self.from_rgb[self.stage - 1](halve(x))), h)
            for block in reversed(self.blocks[: self.stage - 1]):
                h = block(h)
        h = leaky(self.final_conv(self.std(h)))
        h = leaky(self.final_dense(h.flatten(1)))
        logits: Tensor = self.output(h)
        return self.reaching_every_parameter(logits.flatten())
