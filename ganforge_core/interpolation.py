"""Latent interpolation for ``ganforge sample --interpolate K``.

ganforge's latents are standard normal, and a standard normal vector in ``d``
dimensions lies close to the sphere of radius ``sqrt(d)``. A straight line
between two such latents cuts through the inside of that shell (halfway between
two orthogonal latents its norm is only ``1/sqrt(2)`` of theirs), where the
generator never saw a latent during training. :func:`slerp` walks along the
great circle between the two directions instead (Shoemake 1985; White 2016,
"Sampling Generative Networks") at constant angular speed, and interpolates the
norm linearly, so every intermediate latent has the norm ``(1 - t)|a| + t|b|``.
"""

from __future__ import annotations

import torch
from torch import Tensor

PARALLEL = 1e-6
"""``sin`` of the angle below which two latents count as parallel (or opposite): a straight line then."""


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between the rows of ``a`` and ``b`` ([N, D]) at fractions ``t`` ([K]).

    Returns [N, K, D]. The direction moves along the great circle at constant
    angular speed; the norm moves linearly from ``|a|`` to ``|b|``. ``t = 0`` and
    ``t = 1`` give ``a`` and ``b`` exactly. Parallel or opposite rows, where the
    great circle is not defined, fall back to a straight line.
    """
    a, b = a.double(), b.double()
    t = t.double()[None, :, None]
    norm_a, norm_b = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    unit_a, unit_b = a / norm_a.clamp(min=1e-30), b / norm_b.clamp(min=1e-30)
    cos = (unit_a * unit_b).sum(1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)[:, None]  # [N, 1, 1]
    sin = torch.sin(omega)
    curved = sin > PARALLEL
    safe = torch.where(curved, sin, torch.ones_like(sin))
    direction = (torch.sin((1 - t) * omega) * unit_a[:, None] + torch.sin(t * omega) * unit_b[:, None]) / safe
    norm = (1 - t) * norm_a[:, None] + t * norm_b[:, None]
    straight = (1 - t) * a[:, None] + t * b[:, None]
    out = torch.where(curved, direction * norm, straight)
    # The endpoints exactly, whatever rounding did.
    out = torch.where(t == 0, a[:, None], torch.where(t == 1, b[:, None], out))
    return out.float()


def fractions(steps: int) -> Tensor:
    """``steps`` evenly spaced fractions from 0 to 1, both included."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    return torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
