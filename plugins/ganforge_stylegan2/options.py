"""The options of the StyleGAN2 networks and of path-length regularization, and the sides they take; no torch."""

from __future__ import annotations

from pydantic import Field

from ganforge_core import Options

STARTS = range(4, 8)  # the side of the first synthesis block (StyleGAN2: 4; 7 gives MNIST's 28)


def start_and_doublings(side: int) -> tuple[int, int] | None:
    """(start, k) with side == start * 2**k, start in 4..7 and k >= 1 (halving while even), else None."""
    start, k = side, 0
    while start % 2 == 0 and start // 2 >= STARTS[0]:
        start, k = start // 2, k + 1
    return (start, k) if k >= 1 and start in STARTS else None


class GeneratorOptions(Options):
    z_dim: int = Field(128, ge=1, le=1024, description="latent dimensions (StyleGAN2: 512)")
    w_dim: int = Field(128, ge=1, le=1024, description="intermediate latent (w) dimensions (StyleGAN2: 512)")
    mapping_layers: int = Field(4, ge=1, le=8, description="fully connected layers of the mapping network z -> w "
                                "(StyleGAN2: 8; stylegan2-ada's CIFAR-10 setup: 2)")
    mapping_lr_multiplier: float = Field(
        0.01, gt=0.0, le=1.0, description="equalized-lr multiplier of the mapping network (StyleGAN2: 0.01)"
    )
    width: int = Field(64, ge=1, le=512, description="channels of every synthesis block (StyleGAN2: up to 512; "
                       "64 keeps CPU runs quick)")
    style_mixing: float = Field(
        0.9, ge=0.0, le=1.0, description="probability that a training sample mixes the styles of two latents "
        "(StyleGAN2: 0.9; 0 turns mixing off)"
    )
    truncation_psi: float = Field(
        1.0, ge=0.0, le=2.0, description="truncation in eval mode (samples, metrics): w = w_avg + psi * "
        "(w - w_avg); 1 is none, 0 gives every latent the average image"
    )
    w_avg_beta: float = Field(
        0.995, ge=0.0, lt=1.0, description="decay of the running average of w that truncation uses (StyleGAN2: 0.995)"
    )


class DiscriminatorOptions(Options):
    width: int = Field(64, ge=1, le=512, description="channels of every residual block (StyleGAN2: up to 512; "
                       "64 keeps CPU runs quick)")
    mbstd_group: int = Field(4, ge=1, le=64, description="minibatch standard deviation group size (StyleGAN2: 4; "
                             "the largest divisor of the batch up to it is used)")


class PathLengthOptions(Options):
    weight: float = Field(2.0, ge=0.0, description="weight of the penalty (StyleGAN2: 2)")
    decay: float = Field(0.01, gt=0.0, le=1.0, description="rate of the running mean of path lengths (StyleGAN2: 0.01)")
    every: int = Field(4, ge=1, le=1000, description="lazy: a G update of its own every k G steps, weight times k "
                       "(StyleGAN2: 4)")
    batch_shrink: int = Field(2, ge=1, le=64, description="the penalty's batch is the G batch divided by this "
                              "(StyleGAN2: 2)")
