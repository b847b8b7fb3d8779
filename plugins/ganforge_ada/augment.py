"""ADA's augmentation pipeline in plain PyTorch (Karras et al. 2020, appendix B).

The ops and their strengths are stylegan2-ada-pytorch's ``AugmentPipe`` (the
``bgc`` pipeline), applied in its order. Each op is applied to each sample
independently with probability ``p`` (a tensor, so ``p`` may change on the device
without a host sync); a sample an op skips keeps its values exactly, so at
``p = 0`` the pipeline is the identity. Everything is differentiable in the
images, so G learns through the augmentations D sees.

* blit (exact pixel moves): ``xflip`` (flip left-right, or not, at random),
  ``rotate90`` (a random multiple of 90 degrees; 0 or 180 on non-square images),
  ``xint`` (integer translation up to 1/8 of the side, reflected at the border).
* geom (one bilinear ``grid_sample`` with reflection padding): ``scale``
  (isotropic, log2-normal with std 0.2), ``rotate`` (uniform in +-180 degrees,
  before and after ``aniso``, each with probability ``1 - sqrt(1 - p)``, so that
  a sample is rotated with probability p), ``aniso`` (x scaled by s and y by 1/s,
  log2-normal std 0.2), ``xfrac`` (translation, normal with std 1/8 of the side).
* color (a per-sample affine map of the channels): ``brightness`` (+ normal,
  std 0.2), ``contrast`` (x log2-normal, std 0.5), ``lumaflip`` (mirror along the
  grey axis, at random), ``hue`` (rotation about the grey axis, uniform in +-180
  degrees), ``saturation`` (x log2-normal off the grey axis, std 1). Three channels
  are RGB; any other count is treated as grey levels, as AugmentPipe does for one
  channel (``hue`` and ``saturation`` then change nothing, ``lumaflip`` negates).
  Each colour op applies with probability ``color_p * p`` (AugmentPipe's
  per-op multipliers: 1 in ADA's ``bgc``, 0.5 in R3GAN's pipeline).
* ``cutout`` (not in ``bgc``; R3GAN's pipeline adds it): a rectangle half the
  image's height and width, centred uniformly at random, set to 0 (mid-grey on
  [-1, 1] images), as AugmentPipe's ``cutout`` with ``cutout_size=0.5``.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge_ada.options import COLOR, GEOM

CUTOUT_SIZE = 0.5
XINT_MAX = 0.125
SCALE_STD = 0.2
ROTATE_MAX = 1.0
ANISO_STD = 0.2
XFRAC_STD = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5
HUE_MAX = 1.0
SATURATION_STD = 1.0


def augment(x: Tensor, p: Tensor | float, ops: Collection[str], color_p: float = 1.0) -> Tensor:
    """Images ``[N, C, H, W]`` with each op in ``ops`` applied to each sample with probability ``p``
    (``color_p * p`` for the colour ops)."""
    if x.dim() != 4:
        raise ValueError(f"ada augments image batches [N, C, H, W]; got shape {list(x.shape)}")
    draw = _Draws(x.shape[0], torch.as_tensor(p, dtype=torch.float32, device=x.device), x.device)
    if "xflip" in ops:
        x = xflip(x, draw.applied() & (draw.uniform() < 0.5))
    if "rotate90" in ops:
        x = rotate90(x, draw.applied(), draw.uniform())
    if "xint" in ops:
        x = translate_int(x, draw.applied(), draw.uniform(2) * 2 - 1)
    if any(op in ops for op in GEOM):
        x = _geometric(x, draw, ops)
    if any(op in ops for op in COLOR):
        x = _colour(x, draw, ops, color_p)
    if "cutout" in ops:
        x = cutout(x, draw.applied(), draw.uniform(2))
    return x


class _Draws:
    """Per-sample random draws on the batch's device."""

    def __init__(self, n: int, p: Tensor, device: torch.device) -> None:
        self.n, self.p, self.device = n, p, device

    def uniform(self, *size: int) -> Tensor:
        return torch.rand(self.n, *size, device=self.device)

    def normal(self, *size: int) -> Tensor:
        return torch.randn(self.n, *size, device=self.device)

    def applied(self, probability: Tensor | None = None) -> Tensor:
        """[N] booleans: which samples an op applies to (each with ``probability``, default p)."""
        return self.uniform() < (self.p if probability is None else probability)


def _where(mask: Tensor, changed: Tensor, x: Tensor) -> Tensor:
    return torch.where(mask.view(-1, *([1] * (x.dim() - 1))), changed.to(x.dtype), x)


def xflip(x: Tensor, mask: Tensor) -> Tensor:
    """The samples ``mask`` selects flipped left-right."""
    return _where(mask, x.flip(3), x)


def rotate90(x: Tensor, mask: Tensor, u: Tensor) -> Tensor:
    """The samples ``mask`` selects turned by ``floor(4u)`` quarter turns (``2 * floor(2u)`` if not square)."""
    turns = (0, 1, 2, 3) if x.shape[2] == x.shape[3] else (0, 2)
    choice = (u * len(turns)).long().clamp(max=len(turns) - 1)
    choice = torch.where(mask, choice, 0)
    turned = torch.stack([torch.rot90(x, k, dims=(2, 3)) for k in turns])
    return turned[choice, torch.arange(x.shape[0], device=x.device)]


def _mirror(index: Tensor, size: int) -> Tensor:
    """Indices reflected into [0, size) about the border (..., 1, 0 | 0, 1, ..., size-1 | size-1, ...)."""
    index = index.remainder(2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def translate_int(x: Tensor, mask: Tensor, t: Tensor) -> Tensor:
    """Shift the samples ``mask`` selects by ``round(t * XINT_MAX * side)`` pixels (``t`` in [-1, 1], [N, 2] as
    x, y), reflecting at the border."""
    n, c, h, w = x.shape
    scale = torch.tensor([w, h], device=x.device, dtype=t.dtype) * XINT_MAX
    shift = torch.where(mask[:, None], (t * scale).round(), 0).long()
    rows = _mirror(torch.arange(h, device=x.device)[None] - shift[:, 1:], h)  # [N, H]
    cols = _mirror(torch.arange(w, device=x.device)[None] - shift[:, :1], w)  # [N, W]
    index = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return x.flatten(2).gather(2, index).view(n, c, h, w)


def cutout(x: Tensor, mask: Tensor, centre: Tensor, size: float = CUTOUT_SIZE) -> Tensor:
    """Zero a ``size``-by-``size`` rectangle (a fraction of each side) around ``centre`` ([N, 2], x then y, in
    [0, 1]) in the samples ``mask`` picks. Pixel centres strictly inside the rectangle are cut."""
    n, _, h, w = x.shape
    xs = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) / w
    ys = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) / h
    inside_x = (xs[None, :] - centre[:, 0:1]).abs() < size / 2  # [N, W]
    inside_y = (ys[None, :] - centre[:, 1:2]).abs() < size / 2  # [N, H]
    cut = inside_y[:, :, None] & inside_x[:, None, :] & mask[:, None, None]
    return x * (~cut)[:, None].to(x.dtype)


def _eye(n: int, size: int, device: torch.device) -> Tensor:
    return torch.eye(size, device=device).expand(n, size, size).clone()


def _scale(sx: Tensor, sy: Tensor) -> Tensor:
    m = _eye(sx.shape[0], 3, sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(theta: Tensor) -> Tensor:
    m = _eye(theta.shape[0], 3, theta.device)
    cos, sin = theta.cos(), theta.sin()
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def _translate(tx: Tensor, ty: Tensor) -> Tensor:
    m = _eye(tx.shape[0], 3, tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _geometric(x: Tensor, draw: _Draws, ops: Collection[str]) -> Tensor:
    """scale, rotate, aniso, xfrac as one inverse map (output pixel -> input pixel), resampled once."""
    n, _, h, w = x.shape
    inverse = _eye(n, 3, x.device)  # in pixels, about the image centre
    moved = torch.zeros(n, dtype=torch.bool, device=x.device)
    one = torch.ones(n, device=x.device)

    def then(mask: Tensor, matrix: Tensor) -> None:
        nonlocal inverse, moved
        inverse = inverse @ matrix
        moved = moved | mask

    def rotation() -> None:  # applied twice, so that P(rotated at all) = p
        mask = draw.applied(1 - (1 - draw.p).clamp(min=0).sqrt())
        theta = torch.where(mask, (draw.uniform() * 2 - 1) * math.pi * ROTATE_MAX, 0)
        then(mask, _rotate(theta))

    if "scale" in ops:
        mask = draw.applied()
        s = torch.where(mask, torch.exp2(draw.normal() * SCALE_STD), one)
        then(mask, _scale(1 / s, 1 / s))
    if "rotate" in ops:
        rotation()
    if "aniso" in ops:
        mask = draw.applied()
        s = torch.where(mask, torch.exp2(draw.normal() * ANISO_STD), one)
        then(mask, _scale(1 / s, s))
    if "rotate" in ops:
        rotation()
    if "xfrac" in ops:
        mask = draw.applied()
        t = torch.where(mask[:, None], draw.normal(2) * XFRAC_STD, 0)
        then(mask, _translate(-t[:, 0] * w, -t[:, 1] * h))
    # affine_grid's coordinates run from -1 to 1 across the image: pixels = half-sides * normalised.
    half = torch.diag(torch.tensor([w / 2, h / 2, 1.0], device=x.device))
    theta = (torch.linalg.inv(half) @ inverse @ half)[:, :2].to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    resampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return _where(moved, resampled, x)


def _rotate_about_grey(theta: Tensor, axis: Tensor) -> Tensor:
    """Rodrigues' rotation by ``theta`` [N] about the unit vector ``axis`` [3]: [N, 3, 3]."""
    cross = torch.zeros(3, 3, device=axis.device)
    cross[0, 1], cross[0, 2], cross[1, 2] = -axis[2], axis[1], -axis[0]
    cross = cross - cross.T
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    return cos * torch.eye(3, device=axis.device) + sin * cross + (1 - cos) * torch.outer(axis, axis)


def _colour(x: Tensor, draw: _Draws, ops: Collection[str], color_p: float = 1.0) -> Tensor:
    """brightness, contrast, lumaflip, hue, saturation composed into one map ``A @ rgb + b`` per sample."""
    n, c = x.shape[:2]
    device = x.device
    linear, offset = _eye(n, 3, device), torch.zeros(n, 3, device=device)
    grey = torch.full((3,), 1 / math.sqrt(3), device=device)
    on_grey = torch.outer(grey, grey)
    touched = torch.zeros(n, dtype=torch.bool, device=device)
    probability = draw.p * color_p

    def then(mask: Tensor, matrix: Tensor, shift: Tensor | None = None) -> None:
        nonlocal linear, offset, touched
        linear, offset = matrix @ linear, (matrix @ offset[:, :, None])[:, :, 0]
        if shift is not None:
            offset = offset + shift
        touched = touched | mask

    if "brightness" in ops:
        mask = draw.applied(probability)
        b = torch.where(mask, draw.normal() * BRIGHTNESS_STD, 0)
        then(mask, _eye(n, 3, device), b[:, None].expand(n, 3))
    if "contrast" in ops:
        mask = draw.applied(probability)
        k = torch.where(mask, torch.exp2(draw.normal() * CONTRAST_STD), 1)
        then(mask, k[:, None, None] * torch.eye(3, device=device))
    if "lumaflip" in ops:
        mask = draw.applied(probability) & (draw.uniform() < 0.5)
        then(mask, torch.eye(3, device=device) - 2 * mask.float()[:, None, None] * on_grey)
    if "hue" in ops:
        mask = draw.applied(probability)
        theta = torch.where(mask, (draw.uniform() * 2 - 1) * math.pi * HUE_MAX, 0)
        then(mask, _rotate_about_grey(theta, grey))
    if "saturation" in ops:
        mask = draw.applied(probability)
        s = torch.where(mask, torch.exp2(draw.normal() * SATURATION_STD), 1)[:, None, None]
        then(mask, on_grey + (torch.eye(3, device=device) - on_grey) * s)
    if c == 3:
        coloured = torch.einsum("nij,njhw->nihw", linear.to(x.dtype), x) + offset.to(x.dtype)[:, :, None, None]
    else:  # grey levels: the map's effect on a grey pixel (r = g = b), per channel
        gain, shift = linear.mean(dim=1).sum(dim=1), offset.mean(dim=1)
        coloured = x * gain.to(x.dtype)[:, None, None, None] + shift.to(x.dtype)[:, None, None, None]
    return _where(touched, coloured, x)
