"""Inception FID and KID for image datasets, with weights the user supplies.

``inception-fid`` and ``inception-kid`` compare the 2,048 pool features of an
Inception v3 (see :mod:`ganforge_inception.network`) on generated and real images,
beside the same statistic between two disjoint halves of the real data (the
real-vs-real floor), as ``classifier-fid`` does. The network is the one its weights
file is for: pytorch-fid's port of the TF-FID Inception graph, the network of
published FIDs (``pt_inception-2015-12-05-6726825d.pth``, built by the optional
package pytorch-fid), or torchvision's ImageNet Inception v3, whose numbers must
never go in a column with published FIDs.

Nothing is downloaded unless asked: the weights are a local file (``weights=FILE``,
or ``$GANFORGE_INCEPTION_WEIGHTS``, or pytorch-fid's file where pytorch-fid keeps it
in torch.hub's cache), or torchvision's file in torch.hub's cache with
``download=true``. Without any, naming the metric for a run is a one-line error
before it trains (and running it, as ``ganforge eval`` does, the same line). Both
metrics are ``opt-in``: they run only when named (``--metric inception-fid``), never
as a default metric of an image dataset.
"""

from __future__ import annotations

from collections.abc import Callable

from ganforge_core import BuildContext, Metric, Register, hookimpl
from ganforge_inception.options import InceptionOptions

INCEPTION = (
    "Szegedy et al. 2016, 'Rethinking the Inception architecture for computer vision' "
    "(the TF-FID graph of papers through pytorch-fid, or torchvision's ImageNet weights)"
)


def _factory(name: str) -> Callable[[InceptionOptions, BuildContext], Metric]:
    """A factory of the metric class ``name`` in :mod:`ganforge_inception.metrics` (torch: imported when built)."""

    def build(options: InceptionOptions, ctx: BuildContext) -> Metric:
        from ganforge_inception import metrics

        return getattr(metrics, name)(options, ctx)

    return build


@hookimpl
def ganforge_register_metrics(register: Register) -> None:
    register(
        "inception-fid",
        _factory("InceptionFID"),
        options=InceptionOptions,
        summary="FID on Inception v3's 2048 pool features, with the real-vs-real floor, from your local weights "
        "file: pytorch-fid's TF-FID network of papers, or torchvision's ImageNet one; runs only when named",
        requires={"image"},
        traits={"opt-in"},
        paper="Heusel et al. 2017, 'GANs trained by a two time-scale update rule' (FID); " + INCEPTION,
    )
    register(
        "inception-kid",
        _factory("InceptionKID"),
        options=InceptionOptions,
        summary="KID (unbiased cubic-kernel MMD²) on Inception v3's pool features (your local weights file: "
        "pytorch-fid's TF-FID network or torchvision's), with the real floor; runs only when named",
        requires={"image"},
        traits={"opt-in"},
        paper="Bińkowski et al. 2018, 'Demystifying MMD GANs' (KID); " + INCEPTION,
    )
