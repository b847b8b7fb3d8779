"""The options of the Inception metrics and where their weights come from; importable without torch."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from ganforge_core import Options

ENV = "GANFORGE_INCEPTION_WEIGHTS"
# pytorch-fid's port of the TF-FID Inception graph that published FIDs use
# (pytorch_fid.inception.FID_WEIGHTS_URL; tests/test_inception.py checks they agree).
TF_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
TF_FID_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{TF_FID_FILE}"


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or does not fit its network; one line."""


def hub_checkpoints() -> Path:
    """torch.hub's checkpoint folder as ``torch.hub.get_dir()`` finds it without ``set_dir``:
    ``$TORCH_HOME/hub/checkpoints``, ``$TORCH_HOME`` defaulting to ``$XDG_CACHE_HOME/torch``
    and that to ``~/.cache/torch`` (computed here so that options import no torch)."""
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    home = os.environ.get("TORCH_HOME") or os.path.join(cache, "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def tf_fid_cached() -> Path:
    """Where pytorch-fid's weights file lies when pytorch-fid (or the user) put it in torch.hub's cache."""
    return hub_checkpoints() / TF_FID_FILE


def no_weights() -> str:
    """The one line saying where weights come from (short: it is quoted within a validation error)."""
    return (
        f"no Inception weights: for papers' TF-FID network, save pytorch-fid's {TF_FID_URL} as {tf_fid_cached()}, "
        f"or give weights=FILE or {ENV}=FILE, or download=true for torchvision's ImageNet weights (not papers' FIDs)"
    )


class InceptionOptions(Options):
    download: bool = Field(
        False,
        description="use torchvision's ImageNet weights from torch.hub's cache ($TORCH_HOME/hub/checkpoints), "
        "downloading them there first if missing (needs the internet once; not the FIDs of papers)",
    )
    weights: str | None = Field(
        None,
        validate_default=True,
        description=f"a local state dict (.pt/.pth, read with weights_only=True): pytorch-fid's {TF_FID_FILE} "
        "(the TF-FID network of papers) or a torchvision inception_v3; "
        f"default: ${ENV}, else {TF_FID_FILE} in torch.hub's cache ($TORCH_HOME/hub/checkpoints) when there",
    )
    samples: int = Field(
        5_000, ge=2, le=1_000_000,
        description="generated samples; capped at half the real set so the real floor has two halves"
    )
    splits: int = Field(
        5, ge=1, le=1000,
        description="random halvings of the real samples that the score and its floor are averaged over"
    )
    batch_size: int = Field(50, ge=1, le=10_000, description="images per Inception forward pass")

    @field_validator("weights")
    @classmethod
    def _find_weights(cls, value: str | None, info: ValidationInfo) -> str | None:
        download = info.data.get("download", False)
        if value is not None and download:
            raise ValueError("give weights=FILE or download=true, not both")
        if value is None and not download:
            value = os.environ.get(ENV) or None
        if value is None and not download and tf_fid_cached().is_file():
            value = str(tf_fid_cached())
        if value is None and not download and _resolving_a_run(info):
            # Fail before training rather than after it. Validated on their own (ganforge
            # plugins, a contract check, `ganforge eval --metric`), the options stay valid
            # and the metric says the same thing when it runs.
            raise ValueError(no_weights())
        # Absolute, so config.json names the same file from any directory. Whether it exists
        # is checked when the metric runs: a run copied elsewhere must still load and sample.
        return str(Path(value).expanduser().absolute()) if value is not None else None


def _resolving_a_run(info: ValidationInfo) -> bool:
    """``resolve()`` validates metrics with the run's dataset traits in the context."""
    context = (info.context or {}).get("resolve")
    return bool(getattr(context, "data_traits", None))
