"""Class-conditional runs (issue 17): dcgan as published, its label path, per-class diversity.

* dcgan's initialisation: Radford et al.'s N(0, 0.02) convs and N(1, 0.02) norm gains
  (``init=dcgan``, the default), or PyTorch's own (``init=pytorch``).
* dcgan's conditional G: labels reach every BatchNorm (conditional BatchNorm), the
  label's embedding at the input is narrow next to z, and within a class the samples
  vary with z.
* ``class-spread``: the diversity of each class's samples next to the real class's.
* the ``monitors`` plugin warns, naming the class, when one class is one image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import ganforge_monitors
from ganforge_core import ConfigError, Dataset, RunConfig, get_registry
from ganforge_core.layers import ClassBatchNorm2d
from ganforge_dcgan.networks import DCGANDiscriminator, DCGANGenerator
from ganforge_dcgan.options import DiscriminatorOptions, GeneratorOptions
from ganforge_digit_metrics.measures import class_spread, spread
from support import build_context
from test_reliability import TINY_MLP
from test_reliability_monitors import healthy

REGISTRY = get_registry()


# -- dcgan's initialisation ------------------------------------------------------------


def _convs(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]


def _norms(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, nn.BatchNorm2d | nn.GroupNorm) and m.weight is not None]


def _networks(init: str) -> list[nn.Module]:
    torch.manual_seed(0)
    return [
        DCGANGenerator(GeneratorOptions(init=init), 1, 28),
        DCGANDiscriminator(DiscriminatorOptions(norm="batch", init=init), 1, 28),
        DCGANDiscriminator(DiscriminatorOptions(norm="layer", init=init), 1, 28),
    ]


def test_dcgan_init_is_the_papers_by_default() -> None:
    assert GeneratorOptions().init == DiscriminatorOptions().init == "dcgan"
    for network in _networks("dcgan"):
        large = [conv for conv in _convs(network) if conv.weight.numel() >= 100_000]
        assert large, "a large layer to measure on"
        for conv in large:  # std error of the std over >= 100,000 weights: ~0.2%
            assert conv.weight.std().item() == pytest.approx(0.02, rel=0.02)
            assert abs(conv.weight.mean().item()) < 2e-4
        for conv in _convs(network):
            assert conv.bias is None or torch.count_nonzero(conv.bias) == 0
        norms = _norms(network)
        assert norms, type(network)
        for norm in norms:  # 64 or 128 gains each: std error of the mean ~0.002
            assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.01)
            assert 0.012 < norm.weight.std().item() < 0.028
            assert torch.count_nonzero(norm.bias) == 0


def test_pytorch_init_keeps_pytorchs_default() -> None:
    for network in _networks("pytorch"):
        for conv in (c for c in _convs(network) if c.weight.numel() >= 10_000):
            # kaiming_uniform_(a=sqrt(5)): U(-b, b), b = 1/sqrt(fan_in), so std 1/sqrt(3 fan_in)
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(conv.weight)
            assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.03)
        for norm in _norms(network):
            assert torch.equal(norm.weight, torch.ones_like(norm.weight))
            assert torch.count_nonzero(norm.bias) == 0


def test_init_is_an_option_of_both_dcgan_networks() -> None:
    for kind in ("generator", "discriminator"):
        component = REGISTRY.get(kind, "dcgan")
        assert component.validate({"init": "pytorch"}).init == "pytorch"
        with pytest.raises(ConfigError, match="option 'init': Input should be 'dcgan' or 'pytorch'"):
            component.validate({"init": "xavier"})


# -- dcgan's conditional generator -----------------------------------------------------


def conditional_generator(classes: int = 10) -> DCGANGenerator:
    torch.manual_seed(0)
    return DCGANGenerator(GeneratorOptions(z_dim=16, width=8), 1, 28, classes)


def test_labels_reach_every_batchnorm_of_the_conditional_generator() -> None:
    """Conditional BatchNorm: each norm's gain and bias rows of the batch's class, and no other, get a gradient.

    (The old label path, an embedding as wide as z concatenated to it, had plain BatchNorms: this fails on it.)
    """
    generator = conditional_generator()
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 and all(isinstance(m, ClassBatchNorm2d) and m.class_gain is not None for m in norms)
    # The label's embedding at the input is a tenth of z's width: as wide as z, it drowned z (issue 17).
    assert generator.net[0].in_channels == 16 + 1
    assert DCGANGenerator(GeneratorOptions(), 1, 28, 10).net[0].in_channels == 100 + 10
    generator(torch.randn(32, 16), torch.full((32,), 3)).square().mean().backward()
    for norm in norms:
        for table in (norm.class_gain, norm.class_bias):
            rows = table.weight.grad.abs().sum(dim=1)
            assert rows[3] > 1e-6 and torch.count_nonzero(rows) == 1, rows


@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
def test_within_a_class_the_conditional_generators_samples_vary_with_z(training: bool) -> None:
    generator = conditional_generator().train(training)
    with torch.no_grad():
        for label in (0, 7):
            labels = torch.full((64,), label)
            varied = generator(torch.randn(64, 16), labels).flatten(1)
            fixed = generator(torch.randn(1, 16).expand(64, -1), labels).flatten(1)
            # Scale-free: a fresh G's eval-mode outputs are ~1e-4 (running statistics still at 0 and 1).
            assert varied.std(dim=0).mean() > 0.3 * varied.abs().mean(), "z moves a class's samples"
            assert fixed.std(dim=0).mean() < 1e-4 * varied.std(dim=0).mean()


def test_unconditional_dcgan_generator_keeps_its_state_dict_keys() -> None:
    """Checkpoints of unconditional runs saved before conditional BatchNorm still load."""
    keys = set(DCGANGenerator(GeneratorOptions(), 1, 28).state_dict())
    bn = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    assert keys == {"net.0.weight", "net.3.weight", "net.6.weight", "net.6.bias"} | {
        f"net.{i}.{name}" for i in (1, 4) for name in bn
    }


# -- the class-spread metric -------------------------------------------------------------


def test_spread_is_the_rms_distance_between_distinct_rows() -> None:
    x = torch.randn(40, 5, dtype=torch.float64)
    pairs = torch.cdist(x, x).square().sum() / (40 * 39)
    assert spread(x) == pytest.approx(math.sqrt(pairs), rel=1e-9)
    assert spread(x[:1].expand(10, -1)) == 0.0 and math.isnan(spread(x[:1]))


def test_class_spread_on_known_features() -> None:
    torch.manual_seed(0)
    real = torch.randn(300, 8)
    classes = torch.arange(300) % 3
    fake = real.clone()
    fake[classes == 1] = real[classes == 1][0]  # class 1: one image
    fake[classes == 2] *= 0.5  # class 2: half as varied
    values = class_spread(real, classes, fake, classes, k=3)
    assert values["classes-measured"] == 3 and values["spread-min-class"] == 1
    assert values["spread-min"] == 0.0
    assert values["spread-mean"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert values["class-recall-min"] < 0.05 and values["class-recall"] > 1 / 3
    # Only classes with more than k rows on both sides are measured.
    few = class_spread(real, classes, fake[:5], classes[:5], k=3)
    assert few == {"classes-measured": 0.0, "spread-overall": pytest.approx(few["spread-overall"])} and "spread-min" not in few


def _metric(**options: Any):
    component = REGISTRY.get("metric", "class-spread")
    return component.build(component.validate(options), build_context())


def test_class_spread_tells_one_image_per_class_from_real_digits() -> None:
    """The shape of issue 17's conditional runs: overall as varied as the data, each class a single image."""
    torch.manual_seed(0)
    component = REGISTRY.get("dataset", "mnist-5k")
    digits = component.build(component.validate({}), build_context())
    one_each = digits.take([int((digits.labels == c).nonzero()[0, 0]) for c in range(10)])
    metric = _metric(samples=2000)
    real = metric.compute(lambda n: digits.take(torch.randint(len(digits), (n,))), digits)
    collapsed = metric.compute(lambda n: one_each[torch.randint(10, (n,))], digits)
    assert real["classes-measured"] == collapsed["classes-measured"] == 10
    assert real["spread-min"] > 0.9 and real["spread-mean"] == pytest.approx(1, abs=0.05)
    assert real["class-recall"] > 0.85 and real["spread-overall"] == pytest.approx(1, abs=0.05)
    assert collapsed["spread-mean"] < 1e-6 and collapsed["class-recall"] < 0.05
    assert collapsed["spread-overall"] > 0.8, "the classes supply the overall spread"


# -- the monitor watches each class --------------------------------------------------------


class PerClass(nn.Module):
    """G(z, labels) for 2-D data: the class's centre, plus z unless the class is in ``collapsed``."""

    z_dim = 2

    def __init__(self, centres: Tensor, collapsed: set[int]) -> None:
        super().__init__()
        self.centres, self.collapsed = centres, collapsed

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        keep = torch.tensor([int(label) not in self.collapsed for label in labels.tolist()], dtype=z.dtype)
        return self.centres[labels] + 0.5 * z * keep[:, None]


@dataclass
class ConditionalRun:
    config: RunConfig
    generator: nn.Module
    dataset: Dataset
    device: torch.device = torch.device("cpu")
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


CENTRES = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, -4.0]])


def conditional_run(collapsed: set[int], info: dict[str, Any] | None = None) -> ConditionalRun:
    torch.manual_seed(0)
    labels = torch.arange(400) % 4
    data = Dataset(samples=CENTRES[labels] + 0.5 * torch.randn(400, 2), labels=labels, num_classes=4, info=info or {})
    run = ConditionalRun(
        config=RunConfig.model_validate({**TINY_MLP, "conditional": True}),
        generator=PerClass(CENTRES, collapsed),
        dataset=data,
    )
    ganforge_monitors.ganforge_train_start(run=run)
    return run


def feed(run: ConditionalRun, intervals: int) -> None:
    for i, (d, g) in enumerate(healthy(intervals)):
        step = ganforge_monitors.SETTINGS.warmup_steps + 10 * i
        ganforge_monitors.ganforge_step_end(run=run, step=step, stats={"loss/d": d, "loss/g": g})


def test_a_class_that_is_one_image_is_warned_once_by_name() -> None:
    run = conditional_run(collapsed={2})
    before = torch.get_rng_state()
    feed(run, 3 * ganforge_monitors.SETTINGS.sample_every)
    assert torch.equal(torch.get_rng_state(), before), "the training RNG stream moved"
    assert len(run.warnings) == 1, run.warnings
    text = run.warnings[0]
    assert text.startswith("monitors: class collapse: the samples of class 2 at step 50 ") and "Try:" in text
    assert "mode collapse" not in text  # the overall check stays silent: the classes supply the spread


def test_every_collapsed_class_is_named_with_the_datasets_class_names() -> None:
    run = conditional_run(collapsed={0, 3}, info={"classes": ["cat", "dog", "eel", "fox"]})
    feed(run, 1)
    assert len(run.warnings) == 1 and "class 0 ('cat'), 3 ('fox') at step 50" in run.warnings[0], run.warnings


def test_classes_that_vary_are_not_class_collapse() -> None:
    run = conditional_run(collapsed=set())
    feed(run, 3 * ganforge_monitors.SETTINGS.sample_every)
    assert run.warnings == []


def test_many_classes_are_checked_a_budget_at_a_time() -> None:
    from ganforge_monitors.monitors import class_sample_spreads

    run = conditional_run(collapsed={1})
    spreads = class_sample_spreads(run, [0, 1, 2, 3], per_class=8, most=2)
    assert len(spreads) == 2 and set(spreads) <= {0, 1, 2, 3}
    every = class_sample_spreads(run, [0, 1, 2, 3], per_class=8, most=4)
    assert every[1] == 0.0 and min(every[c] for c in (0, 2, 3)) > 0.2


class PerClassImages(nn.Module):
    """Class c's images: a grey level of its own plus 0.3 z (class ``collapsed`` ignores z), in [-1, 1]."""

    z_dim = 4

    def __init__(self, collapsed: set[int]) -> None:
        super().__init__()
        self.collapsed = collapsed

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        keep = torch.tensor([int(label) not in self.collapsed for label in labels.tolist()], dtype=z.dtype)
        level = -0.6 + 0.4 * labels.to(z.dtype)
        return (level[:, None, None, None] + 0.3 * (z[:, :1] * keep[:, None])[:, :, None, None]).expand(-1, 1, 4, 4)


def test_the_class_check_compares_with_uint8_images_in_the_models_scale() -> None:
    """Images are stored as uint8 pixels; the real spread is measured on them as G sees data ([-1, 1]),
    so a G as varied as the data is silent and only the collapsed class is named."""
    torch.manual_seed(0)
    labels = torch.arange(400) % 4
    level = -0.6 + 0.4 * labels.float()
    images = level[:, None, None, None] + 0.3 * torch.randn(400, 1, 1, 1).expand(-1, 1, 4, 4)
    pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    for collapsed, named in ((set(), None), ({1}, "class 1 at step 50")):
        run = ConditionalRun(
            config=RunConfig.model_validate({**TINY_MLP, "conditional": True}),
            generator=PerClassImages(collapsed),
            dataset=Dataset(samples=pixels, labels=labels, num_classes=4),
        )
        ganforge_monitors.ganforge_train_start(run=run)
        feed(run, 1)
        if named is None:
            assert run.warnings == [], run.warnings
        else:
            assert len(run.warnings) == 1 and named in run.warnings[0], run.warnings
            assert "class 0" not in run.warnings[0] and "2" not in run.warnings[0].split("class 1")[0]
