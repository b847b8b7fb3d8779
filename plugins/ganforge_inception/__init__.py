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

import os
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor

from ganforge_core import BuildContext, ConfigError, Dataset, Metric, Options, hookimpl
from ganforge_core.features import fid_scores, kid_scores, over_halvings, real_pool, write_provenance
from ganforge_inception import network
from ganforge_inception.network import ENV, NO_WEIGHTS

INCEPTION = (
    "Szegedy et al. 2016, 'Rethinking the Inception architecture for computer vision' "
    "(torchvision's ImageNet weights, not the TF-FID graph of papers)"
)


class InceptionOptions(Options):
    download: bool = Field(
        False,
        description="use torchvision's ImageNet weights from torch.hub's cache ($TORCH_HOME/hub/checkpoints), "
        "downloading them there first if missing (needs the internet once)",
    )
    weights: str | None = Field(
        None,
        validate_default=True,
        description="a local torchvision inception_v3 state dict (.pt/.pth, read with weights_only=True); "
        f"default: ${ENV}",
    )
    samples: int = Field(
        5_000, ge=2, description="generated samples; capped at half the real set so the real floor has two halves"
    )
    splits: int = Field(
        5, ge=1, description="random halvings of the real samples that the score and its floor are averaged over"
    )
    batch_size: int = Field(50, ge=1, description="images per Inception forward pass")

    @field_validator("weights")
    @classmethod
    def _find_weights(cls, value: str | None, info: ValidationInfo) -> str | None:
        download = info.data.get("download", False)
        if value is not None and download:
            raise ValueError("give weights=FILE or download=true, not both")
        if value is None and not download:
            value = os.environ.get(ENV) or None
        if value is None and not download and _resolving_a_run(info):
            # Fail before training rather than after it. Validated on their own (ganforge
            # plugins, a contract check, `ganforge eval --metric`), the options stay valid
            # and the metric says the same thing when it runs.
            raise ValueError(NO_WEIGHTS)
        # Absolute, so config.json names the same file from any directory. Whether it exists
        # is checked when the metric runs: a run copied elsewhere must still load and sample.
        return str(Path(value).expanduser().absolute()) if value is not None else None


def _resolving_a_run(info: ValidationInfo) -> bool:
    """``resolve()`` validates metrics with the run's dataset traits in the context."""
    context = (info.context or {}).get("resolve")
    return bool(getattr(context, "data_traits", None))


class InceptionMetric(Metric):
    name = ""

    def __init__(self, options: InceptionOptions, ctx: BuildContext) -> None:
        self.options = options
        self.device = ctx.device

    def _fail(self, problem: object) -> ConfigError:
        return ConfigError(f"metric '{self.name}': {problem}")

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        options = self.options
        try:
            network.check_images(dataset.samples, "the dataset")
            extractor = network.load(options.weights, options.download)
            real = real_pool(dataset.samples, options.samples)
            m = len(real) // 2
            fake = generate(m)
            network.check_images(fake, "the generator's output")
        except network.WeightsError as exc:
            raise self._fail(exc) from None

        def features(images: Tensor) -> Tensor:
            return network.features(extractor.model, images, options.batch_size, self.device)

        real_features, fake_features = features(real), features(fake)
        fields = {
            "feature_extractor": f"{network.NAME} (ImageNet; {network.FEATURES} pool features, "
            f"{network.SIZE}x{network.SIZE} bilinear)",
            "weights": str(extractor.path),
            "weights_source": extractor.source,
            "weights_sha256": extractor.sha256,
            "n_real": 2 * m,
            "n_fake": m,
        }
        write_provenance(self.name, fields)
        return over_halvings(real_features, fake_features, options.splits, self.measure)

    def measure(self, real_a: Tensor, real_b: Tensor, fake: Tensor) -> dict[str, float]:
        raise NotImplementedError


class InceptionFID(InceptionMetric):
    name = "inception-fid"

    def measure(self, real_a: Tensor, real_b: Tensor, fake: Tensor) -> dict[str, float]:
        return fid_scores(real_a, real_b, fake)


class InceptionKID(InceptionMetric):
    name = "inception-kid"

    def measure(self, real_a: Tensor, real_b: Tensor, fake: Tensor) -> dict[str, float]:
        return kid_scores(real_a, real_b, fake)


def _factory(cls: type[InceptionMetric]) -> Callable[[InceptionOptions, BuildContext], Metric]:
    return lambda options, ctx: cls(options, ctx)


@hookimpl
def ganforge_register_metrics(register):
    register(
        "inception-fid",
        _factory(InceptionFID),
        options=InceptionOptions,
        summary="FID on torchvision's ImageNet Inception v3 (2048 pool features, your local weights file), "
        "with the real-vs-real floor; runs only when named; not comparable with papers' TF-FID numbers",
        requires={"image"},
        traits={"opt-in"},
        paper="Heusel et al. 2017, 'GANs trained by a two time-scale update rule' (FID); " + INCEPTION,
    )
    register(
        "inception-kid",
        _factory(InceptionKID),
        options=InceptionOptions,
        summary="KID (unbiased cubic-kernel MMD²) on torchvision's ImageNet Inception v3 features "
        "(your local weights file), with the real floor; runs only when named",
        requires={"image"},
        traits={"opt-in"},
        paper="Bińkowski et al. 2018, 'Demystifying MMD GANs' (KID); " + INCEPTION,
    )
