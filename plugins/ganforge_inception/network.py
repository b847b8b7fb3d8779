"""The Inception v3 feature extractors (2,048 pool features) and the files their weights come from.

Two networks, told apart by the file (its settings ``ENV`` and where files are looked
for are in :mod:`ganforge_inception.options`, which imports no torch):

* pytorch-fid's port of the TF-FID Inception graph, the network of published FIDs
  (``pt_inception-2015-12-05`` weights, 1,008 classes): built by pytorch-fid itself,
  see :mod:`ganforge_inception.tf_fid`.
* torchvision's ``inception_v3`` (ImageNet, 1,000 classes), built here without
  weights; the weights come from a local file the user names, or from torch.hub's
  cache (``$TORCH_HOME/hub/checkpoints/inception_v3_google-0cc3c7bd.pth``) through
  torchvision's ``Inception_V3_Weights.IMAGENET1K_V1.get_state_dict``, which downloads
  the file only when it is not there yet and only with ``download=true``. Images are
  resized to 299x299 (bilinear, antialiased when shrinking), normalised with
  ImageNet's mean and std and fed to the network with ``transform_input=True``, as
  torchvision does for these weights. Its numbers are not the FIDs of papers.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint is never
unpickled. Images in ``[-1, 1]`` (``[N, 1 or 3, H, W]``) are clamped and grey ones
repeated to three channels before either network sees them.
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

from ganforge_inception import tf_fid
from ganforge_inception.options import ENV, TF_FID_URL, WeightsError, no_weights, tf_fid_cached

NAME = "torchvision inception_v3"
FEATURES = 2048
SIZE = 299
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NESTED = ("state_dict", "model_state_dict", "model")  # keys under which checkpoints nest a state dict
UNUSED = ("AuxLogits.", "fc.")  # the auxiliary head and the classifier: not part of the pool features


@dataclass(frozen=True)
class Extractor:
    model: nn.Module  # images in [-1, 1], [N, 3, H, W], to features [N, 2048]
    path: Path
    sha256: str
    source: str  # "file" or "torch.hub cache"
    network: str  # what the provenance and the run's output name


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
        raise WeightsError(
            f"weights file not found: {path} (pytorch-fid's TF-FID Inception weights, the network of papers' "
            f"FIDs, are {TF_FID_URL})"
        )
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


class TorchvisionFeatures(nn.Module):
    """torchvision's inception_v3 on images in ``[-1, 1]``, resized and normalised as for its ImageNet weights."""

    mean: Tensor
    std: Tensor

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
        return self.net(((x + 1) / 2 - self.mean) / self.std)


def inception(state: Mapping[str, Tensor], where: Path) -> nn.Module:
    """torchvision's inception_v3 with ``state`` loaded strictly; its classifier replaced by the identity."""
    from torchvision.models import inception_v3

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
    return TorchvisionFeatures(model).eval().requires_grad_(False)


def load(weights: str | None, download: bool) -> Extractor:
    """The extractor from a local file (``weights``), or from torch.hub's cache when ``download``;
    pytorch-fid's TF-FID network for a file of its weights, torchvision's inception_v3 otherwise."""
    if weights is not None:
        path = Path(weights).expanduser()
        state = read_file(path)
        source = "torch.hub cache" if path.absolute() == tf_fid_cached().absolute() else "file"
    elif download:
        state, source = read_hub(), "torch.hub cache"
        path = hub_path()
    else:
        raise WeightsError(no_weights())
    if tf_fid.recognises(state):
        model, name = tf_fid.build(state, path), tf_fid.describe()
    else:
        model, name = inception(state, path), f"{NAME} (ImageNet weights, not the TF-FID graph of papers)"
    return Extractor(model, path.absolute(), sha256(path), source, name)


def check_images(images: Tensor | tuple[int, ...], what: str) -> None:
    """``images`` (or their shape, ``[N, C, H, W]``) are images of 1 or 3 channels."""
    shape = tuple(images.shape) if isinstance(images, Tensor) else images
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise WeightsError(f"Inception features need images [N, 1 or 3, H, W]; {what} has shape {list(shape)}")


@torch.no_grad()
def features(model: nn.Module, images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """``[N, 2048]`` pool features (float64, on the CPU) of images in ``[-1, 1]``."""
    model = model.to(device)
    out = []
    for chunk in images.split(batch_size):
        x = chunk.to(device=device, dtype=torch.float32).clamp(-1, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        out.append(model(x).double().cpu())
    return torch.cat(out)
