"""``inception-fid`` and ``inception-kid``: the metrics on Inception v3's pool features (see the package)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from torch import Tensor

from ganforge_core import BuildContext, ConfigError, Dataset, Metric
from ganforge_core.features import fid_scores, kid_scores, over_halvings, real_pool, write_provenance
from ganforge_inception import network
from ganforge_inception.options import InceptionOptions


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
            network.check_images((len(dataset), *dataset.shape), "the dataset")
            extractor = network.load(options.weights, options.download)
            real = real_pool(dataset, options.samples)
            m = len(real) // 2
            fake = generate(m)
            network.check_images(fake, "the generator's output")
        except network.WeightsError as exc:
            raise self._fail(exc) from None
        # The run's output says which network the numbers come from (the metric returns numbers only).
        print(f"{self.name}: {extractor.network}, weights {extractor.path}", file=sys.stderr, flush=True)

        def features(images: Tensor) -> Tensor:
            return network.features(extractor.model, images, options.batch_size, self.device)

        real_features, fake_features = features(real), features(fake)
        fields = {
            "feature_extractor": f"{extractor.network}: {network.FEATURES} pool features of images resized "
            f"to {network.SIZE}x{network.SIZE} (bilinear)",
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
