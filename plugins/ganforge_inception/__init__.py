"""Inception FID and KID for image datasets, with weights the user supplies.

``inception-fid`` and ``inception-kid`` compare the 2,048 pool features of
torchvision's ImageNet Inception v3 (see :mod:`ganforge_inception.network`) on
generated and real images, beside the same statistic between two disjoint halves
of the real data (the real-vs-real floor), as ``classifier-fid`` does.

Nothing is downloaded unless asked: the weights are a local file (``weights=FILE``,
or ``$GANFORGE_INCEPTION_WEIGHTS``), or torchvision's file in torch.hub's cache with
``download=true``. Without either, naming the metric for a run is a one-line error
before it trains (and running it, as ``ganforge eval`` does, the same line). Both
metrics are ``opt-in``: they run only when named (``--metric inception-fid``), never
as a default metric of an image dataset.

These are not the FIDs of papers, which use the TF-FID Inception graph
(pytorch-fid's weights); never put them in a column with published FIDs.
"""

from __future__ import annotations

from collections.abc import Callable

from ganforge_core import BuildContext, Metric, hookimpl
from ganforge_inception.options import InceptionOptions

INCEPTION = (
    "Szegedy et al. 2016, 'Rethinking the Inception architecture for computer vision' "
    "(torchvision's ImageNet weights, not the TF-FID graph of papers)"
)


def _factory(name: str) -> Callable[[InceptionOptions, BuildContext], Metric]:
    """A factory of the metric class ``name`` in :mod:`ganforge_inception.metrics` (torch: imported when built)."""

    def build(options: InceptionOptions, ctx: BuildContext) -> Metric:
        from ganforge_inception import metrics

        return getattr(metrics, name)(options, ctx)

    return build


@hookimpl
def ganforge_register_metrics(register):
    register(
        "inception-fid",
        _factory("InceptionFID"),
        options=InceptionOptions,
        summary="FID on torchvision's ImageNet Inception v3 (2048 pool features, your local weights file), "
        "with the real-vs-real floor; runs only when named; not comparable with papers' TF-FID numbers",
        requires={"image"},
        traits={"opt-in"},
        paper="Heusel et al. 2017, 'GANs trained by a two time-scale update rule' (FID); " + INCEPTION,
    )
    register(
        "inception-kid",
        _factory("InceptionKID"),
        options=InceptionOptions,
        summary="KID (unbiased cubic-kernel MMD²) on torchvision's ImageNet Inception v3 features "
        "(your local weights file), with the real floor; runs only when named",
        requires={"image"},
        traits={"opt-in"},
        paper="Bińkowski et al. 2018, 'Demystifying MMD GANs' (KID); " + INCEPTION,
    )
