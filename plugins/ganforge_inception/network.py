"""torchvision's Inception v3 as a 2048-feature extractor (its settings ``ENV`` and ``NO_WEIGHTS``
are in :mod:`ganforge_inception.options`, which imports no torch).

The architecture is ``torchvision.models.inception_v3`` (ImageNet, 1,000 classes),
built without weights; the weights come from a local file the user names, or from
torch.hub's cache (``$TORCH_HOME/hub/checkpoints/inception_v3_google-0cc3c7bd.pth``)
through torchvision's ``Inception_V3_Weights.IMAGENET1K_V1.get_state_dict``, which
downloads the file only when it is not there yet. Every file is read with
``torch.load(weights_only=True)``: a checkpoint is never unpickled.

This is *not* the TF-FID Inception graph that published FIDs use (pytorch-fid's
``pt_inception`` weights, 1,008 classes, with different pooling in four blocks);
such a file is recognised and refused rather than silently run in the wrong network.

Images in ``[-1, 1]`` (``[N, 1 or 3, H, W]``) are clamped, grey ones repeated to three
channels, resized to 299x299 (bilinear, antialiased when shrinking), normalised with
ImageNet's mean and std and fed to the network with ``transform_input=True``, as
torchvision does for these weights. The features are the 2,048 averaged pool units
before the classifier.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge_inception.options import ENV, NO_WEIGHTS

NAME = "torchvision inception_v3"
FEATURES = 2048
SIZE = 299
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NESTED = ("state_dict", "model_state_dict", "model")  # keys under which checkpoints nest a state dict
UNUSED = ("AuxLogits.", "fc.")  # the auxiliary head and the classifier: not part of the pool features
TF_FID_CLASSES = 1008  # pytorch-fid's port of the TF-FID graph has a 1,008-way classifier
class WeightsError(ValueError):
    """A weights file that is missing, unreadable or not an Inception v3; one line."""


@dataclass(frozen=True)
class Extractor:
    model: nn.Module
    path: Path
    sha256: str
    source: str  # "file" or "torch.hub cache"


def hub_weights() -> Any:
    from torchvision.models import Inception_V3_Weights

    return Inception_V3_Weights.IMAGENET1K_V1


def hub_path() -> Path:
    """Where torch.hub keeps torchvision's Inception v3 file (under ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(hub_weights().url).path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def state_dict_from(obj: Any, where: Path) -> dict[str, Tensor]:
    """The state dict in a loaded checkpoint: the object itself, or one nested under a usual key."""
    if isinstance(obj, Mapping):
        for key in NESTED:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        what = f"a {type(obj).__name__}"
        if isinstance(obj, Mapping):
            what += f" with keys {_few(sorted(map(str, obj)))}" if obj else " that is empty"
        raise WeightsError(f"{where} holds {what}, not a state dict of tensors (nor one under {'/'.join(NESTED)})")
    keys = [str(k) for k in obj]
    if all(k.startswith("module.") for k in keys):  # saved from DataParallel
        return {k.removeprefix("module."): v for k, v in zip(keys, obj.values(), strict=True)}
    return dict(zip(keys, obj.values(), strict=True))


def read_file(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a file that is not a checkpoint
        raise WeightsError(
            f"{path} is not a checkpoint that torch.load(weights_only=True) reads ({_first_line(exc)})"
        ) from None
    return state_dict_from(loaded, path)


def read_hub() -> dict[str, Tensor]:
    """torchvision's ImageNet weights from torch.hub's cache, downloaded first if missing."""
    path = hub_path()
    there = path.exists()
    try:
        loaded = hub_weights().get_state_dict(progress=True, check_hash=True, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - a failed download or load, whatever its type, is one line
        if there:
            raise WeightsError(
                f"{path} (torch.hub's cache) does not load with weights_only=True ({_first_line(exc)}); "
                "delete it to download it again"
            ) from None
        raise WeightsError(
            f"could not download torchvision's Inception v3 weights from {hub_weights().url} to {path} "
            f"({_first_line(exc)}); offline, copy that file there, or give weights=FILE or {ENV}=FILE"
        ) from None
    return state_dict_from(loaded, path)


def inception(state: Mapping[str, Tensor], where: Path) -> nn.Module:
    """torchvision's inception_v3 with ``state`` loaded strictly; its classifier replaced by the identity."""
    from torchvision.models import inception_v3

    classifier = state.get("fc.weight")
    if classifier is not None and classifier.shape[0] == TF_FID_CLASSES:
        raise WeightsError(
            f"{where} looks like pytorch-fid's TF-FID Inception weights ({TF_FID_CLASSES} classes), which need "
            "the TF graph's pooling; this metric takes torchvision's ImageNet inception_v3 weights (1,000 classes)"
        )
    model = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True)
    model.fc = nn.Identity()
    expected = model.state_dict()
    given = {k: v for k, v in state.items() if not k.startswith(UNUSED)}
    # Files saved before PyTorch 0.4.1 (torchvision's among them) lack BatchNorm's batch counters;
    # load_state_dict fills those in.
    needed = [k for k in expected if not k.endswith(".num_batches_tracked")]
    missing = [k for k in needed if k not in given]
    unexpected = [k for k in given if k not in expected]
    if missing:
        extra = f"; {len(unexpected)} unexpected ({_few(unexpected)})" if unexpected else ""
        raise WeightsError(
            f"{where} is not an Inception v3 state dict: {len(missing)} of its {len(needed)} keys are "
            f"missing ({_few(missing)}){extra}"
        )
    if unexpected:
        raise WeightsError(f"{where} has keys that Inception v3 lacks: {len(unexpected)} ({_few(unexpected)})")
    wrong = [k for k in given if given[k].shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise WeightsError(
            f"{where} does not fit Inception v3: {k} has shape {list(given[k].shape)}, "
            f"expected {list(expected[k].shape)}" + (f" ({len(wrong)} tensors differ)" if len(wrong) > 1 else "")
        )
    model.load_state_dict(given)
    return model.eval().requires_grad_(False)


def load(weights: str | None, download: bool) -> Extractor:
    """The extractor from a local file (``weights``), or from torch.hub's cache when ``download``."""
    if weights is not None:
        path = Path(weights).expanduser()
        state, source = read_file(path), "file"
    elif download:
        state, source = read_hub(), "torch.hub cache"
        path = hub_path()
    else:
        raise WeightsError(NO_WEIGHTS)
    model = inception(state, path)
    return Extractor(model, path.absolute(), sha256(path), source)


def check_images(images: Tensor, what: str) -> None:
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise WeightsError(f"Inception features need images [N, 1 or 3, H, W]; {what} has shape {list(images.shape)}")


@torch.no_grad()
def features(model: nn.Module, images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """``[N, 2048]`` pool features (float64, on the CPU) of images in ``[-1, 1]``."""
    model = model.to(device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    out = []
    for chunk in images.split(batch_size):
        x = chunk.to(device=device, dtype=torch.float32).clamp(-1, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
        out.append(model(((x + 1) / 2 - mean) / std).double().cpu())
    return torch.cat(out)
