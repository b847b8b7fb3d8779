"""pytorch-fid's port of the TF-FID Inception graph, the network of published FIDs, on a local file.

The network is pytorch-fid's own ``pytorch_fid.inception.InceptionV3`` (the package
is the reference implementation; install it with ``pip install 'ganforge[tf-fid]'``),
returning its final average pool: 2,048 features. pytorch-fid fetches its weights
with ``load_state_dict_from_url``; here that call is replaced, while the network is
built, by the state dict already read from the user's file with
``torch.load(weights_only=True)``, so nothing is downloaded and nothing unpickled.
pytorch-fid then loads it strictly into its network.

Images in ``[-1, 1]`` (three channels) are mapped to ``[0, 1]``, what pytorch-fid
takes from its image files; the network itself resizes them to 299x299 (bilinear,
``align_corners=False``, no antialiasing) and rescales them to ``[-1, 1]``, exactly as
``pytorch_fid.fid_score`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from unittest import mock

from torch import Tensor, nn

from ganforge_core.errors import shorten
from ganforge_inception.options import WeightsError

CLASSES = 1008  # its classifier's width (torchvision's inception_v3 has 1,000): how a file is recognised


def recognises(state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` is laid out like pytorch-fid's weights (a 1,008-way classifier)."""
    classifier = state.get("fc.weight")
    return classifier is not None and classifier.dim() == 2 and classifier.shape[0] == CLASSES


def describe() -> str:
    return f"pytorch-fid {metadata.version('pytorch-fid')} InceptionV3 (the TF-FID graph of papers)"


class Features(nn.Module):
    """pytorch-fid's InceptionV3 on images in ``[-1, 1]``: ``[N, 3, H, W]`` to ``[N, 2048]``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        return self.net((images + 1) / 2)[0].flatten(1)


def build(state: Mapping[str, Tensor], where: Path) -> nn.Module:
    """pytorch-fid's InceptionV3 with ``state`` as its weights, without its downloader."""
    try:
        from pytorch_fid import inception
    except ImportError:
        raise WeightsError(
            f"{where} holds pytorch-fid's TF-FID Inception weights, whose network comes from the package "
            "pytorch-fid: pip install 'ganforge[tf-fid]'"
        ) from None

    def local(url: str, *args: object, **kwargs: object) -> Mapping[str, Tensor]:
        return state

    with mock.patch.object(inception, "load_state_dict_from_url", local):
        try:
            net = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        except RuntimeError as exc:  # load_state_dict's strict check: one line per problem
            problems = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
            raise WeightsError(f"{where} does not fit pytorch-fid's InceptionV3: {shorten(problems, 300)}") from None
    return Features(net).eval().requires_grad_(False)

