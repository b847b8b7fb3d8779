"""The options of ``ada``; importable without torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ganforge_core import Options

# The augmentations, in the order the pipeline applies them (stylegan2-ada-pytorch's AugmentPipe).
BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
OTHER = ("cutout",)
OPS = (*BLIT, *GEOM, *COLOR, *OTHER)
GROUPS = {"blit": BLIT, "geom": GEOM, "color": COLOR, "bgc": (*BLIT, *GEOM, *COLOR)}


def op_names(text: str) -> tuple[str, ...]:
    """``"blit+hue"`` -> the ops it names, in the pipeline's order; an unknown name raises ValueError."""
    chosen: set[str] = set()
    for part in filter(None, (item.strip() for item in text.split("+"))):
        if part not in OPS and part not in GROUPS:
            known = ", ".join((*GROUPS, *OPS))
            raise ValueError(f"unknown augmentation '{part}'; choose from {known}, joined with '+'")
        chosen.update(GROUPS.get(part, (part,)))
    if not chosen:
        raise ValueError("no augmentation named; give at least one, e.g. ops=bgc or ops=xflip+xint")
    return tuple(op for op in OPS if op in chosen)


class ADAOptions(Options):
    ops: str = Field(
        "bgc",
        description="augmentations joined with '+': xflip, rotate90, xint, scale, rotate, aniso, xfrac, brightness, "
        "contrast, lumaflip, hue, saturation, cutout, or the groups blit, geom, color, bgc (all but cutout, the "
        "paper's default; R3GAN's pipeline is bgc+cutout)",
    )
    target: float = Field(
        0.6, ge=0.0, lt=1.0, description="r_t = E[sign(D(real))] that p steers toward (the paper's 0.6)"
    )
    interval: int = Field(4, ge=1, le=10**6, description="adjust p after every this many D updates (ada_interval)")
    kimg: float = Field(
        500.0,
        gt=0.0,
        le=10**6,
        description="thousands of real images D sees for p to move from 0 to 1 (ada_kimg): each adjustment is "
        "sign(r_t - target) * batch_size * interval / (kimg * 1000)",
    )
    p: float = Field(0.0, ge=0.0, le=1.0, description="the augmentation probability at the start")
    fixed: bool = Field(False, description="keep p at its start value (no adaptation); r_t is still logged")
    anneal: Literal["none", "linear", "cosine"] = Field(
        "none",
        description="instead of adapting p, move it from p to p_to over the run on this curve (R3GAN's "
        "schedule: cosine, from 0 to 0.55 on CIFAR-10); r_t is still logged",
    )
    p_to: float = Field(0.0, ge=0.0, le=1.0, description="with anneal: p at the end of the run")
    color_p: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="each colour op applies with probability color_p * p (ADA: 1; R3GAN's pipeline: 0.5)",
    )

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, ops: str) -> str:
        op_names(ops)
        return ops

    @model_validator(mode="after")
    def _one_way_to_move_p(self) -> ADAOptions:
        if self.anneal != "none" and self.fixed:
            raise ValueError("fixed=true keeps p still and anneal moves it: give one of them")
        return self
