"""The contract every registered component meets, parametrized over the registry.

A new plugin is tested by being registered: ids read ``generator:dcgan``,
``discriminator:mlp-on-ring-8`` and so on.
"""

from __future__ import annotations

import itertools
import math
import typing
from typing import Literal

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from torch import nn

from ganforge_core import (
    KINDS,
    ConfigError,
    Dataset,
    DContext,
    GContext,
    Loss,
    Metric,
    Options,
    Regularizer,
    Schedule,
    ScheduleOptions,
    Targets,
    get_registry,
)
from ganforge_core.registry import NAME_PATTERN
from support import (
    build_context,
    component_id,
    datasets_supporting,
    default_traits,
    first_valid_plan,
    load_dataset,
    small_options,
)

REGISTRY = get_registry()
ALL = REGISTRY.all()
MODALITIES = {"image", "vector"}


def of_kind(kind: str) -> list:
    return [pytest.param(c, id=component_id(c)) for c in REGISTRY.all(kind)]


def with_datasets(kind: str) -> list:
    """(name, dataset name) for every dataset meeting the component's requirements.

    Names, not components, so a falsifying example reads as one line.
    """
    return [
        pytest.param(c.name, d.name, id=f"{component_id(c)}-on-{d.name}")
        for c in REGISTRY.all(kind)
        for d in datasets_supporting(c, REGISTRY)
    ]


def test_registry_loaded_without_problems_and_has_every_kind() -> None:
    assert REGISTRY.problems == []
    missing = [kind for kind in KINDS if not REGISTRY.all(kind)]
    assert missing == [], f"no component registered for {missing}"


# -- every component -----------------------------------------------------------


@pytest.mark.parametrize("component", [pytest.param(c, id=component_id(c)) for c in ALL])
class TestEveryComponent:
    def test_options_model_subclasses_options(self, component) -> None:
        assert isinstance(component.options, type) and issubclass(component.options, Options)

    def test_options_forbid_unknown_keys(self, component) -> None:
        assert component.options.model_config.get("extra") == "forbid"
        with pytest.raises(ConfigError, match="unknown option 'no_such_option_xyz'"):
            component.validate({"no_such_option_xyz": 1})

    def test_every_option_has_a_description(self, component) -> None:
        undescribed = [n for n, f in component.options.model_fields.items() if not (f.description or "").strip()]
        assert undescribed == []

    def test_default_options_validate(self, component) -> None:
        options = component.validate({})
        assert isinstance(options, component.options)
        # Defaults survive a JSON round trip: config.json must rerun the same run.
        assert component.validate(options.model_dump(mode="json")) == options

    def test_small_test_options_validate(self, component) -> None:
        component.validate(small_options(component))

    def test_name_follows_the_naming_rule(self, component) -> None:
        assert NAME_PATTERN.match(component.name), component.name

    def test_summary_is_not_empty(self, component) -> None:
        assert component.summary.strip()

    def test_requires_and_traits_are_strings(self, component) -> None:
        assert all(isinstance(t, str) and t for t in component.requires)
        assert all(isinstance(t, str) and t for t in default_traits(component))


def test_schedule_options_subclass_schedule_options() -> None:
    bad = [c.name for c in REGISTRY.all("scheduler") if not issubclass(c.options, ScheduleOptions)]
    assert bad == []


# -- generators and discriminators ----------------------------------------------

# A network that cannot train on a batch of one must say so: resolve then refuses
# --batch-size 1 (and gradient penalties on a BatchNorm critic) before training.
BATCHNORM_TRAIT = {"generator": "batchnorm-in-g", "discriminator": "batchnorm-in-d"}


def build_network(kind: str, name: str, dataset_name: str, conditional: bool = False, **options):
    component = REGISTRY.get(kind, name)
    dataset = load_dataset(REGISTRY.get("dataset", dataset_name))
    ctx = build_context(
        dataset.shape, num_classes=dataset.num_classes, data_info=dataset.info, conditional=conditional
    )
    chosen = component.validate(small_options(component, **options))
    return component.build(chosen, ctx), dataset, component.traits(chosen)


@pytest.mark.parametrize(("name", "dataset_name"), with_datasets("generator"))
@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 9), training=st.booleans(), seed=st.integers(0, 2**16))
@example(n=1, training=True, seed=0)  # a batch of one in training mode: --batch-size 1
@example(n=1, training=False, seed=0)
def test_generator_maps_latents_to_samples_of_the_data_shape(name, dataset_name, n, training, seed):
    generator, dataset, traits = build_network("generator", name, dataset_name)
    assert isinstance(generator, nn.Module)
    assert isinstance(generator.z_dim, int) and not isinstance(generator.z_dim, bool)
    assert generator.z_dim >= 1
    if n == 1 and training and BATCHNORM_TRAIT["generator"] in traits:
        return  # declared: ganforge never trains this generator on a batch of one
    generator.train(training)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = generator(torch.randn(n, generator.z_dim))
    assert list(out.shape) == [n, *dataset.shape]
    assert out.is_floating_point() and torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "dataset_name"), with_datasets("discriminator"))
@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 2**16))
@example(n=1, seed=0)
def test_discriminator_gives_one_logit_per_sample(name, dataset_name, n, seed):
    discriminator, dataset, traits = build_network("discriminator", name, dataset_name)
    assert isinstance(discriminator, nn.Module)
    if n == 1 and BATCHNORM_TRAIT["discriminator"] in traits:
        return  # declared: ganforge never trains this discriminator on a batch of one
    torch.manual_seed(seed)
    batch = dataset.samples[torch.randint(len(dataset), (n,))]
    logits = discriminator(batch)
    assert list(logits.shape) == [n]
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert any(p.grad is not None for p in discriminator.parameters())


def option_variants(component) -> list[dict]:
    """Every combination of the component's bool and Literal options (the ones that switch layers)."""
    choices = {}
    for field, info in component.options.model_fields.items():
        if info.annotation is bool:
            choices[field] = [False, True]
        elif typing.get_origin(info.annotation) is Literal:
            choices[field] = list(typing.get_args(info.annotation))
    return [dict(zip(choices, values, strict=True)) for values in itertools.product(*choices.values())]


def network_variants() -> list:
    return [
        pytest.param(
            c.kind,
            c.name,
            variant,
            id=f"{component_id(c)}-{'-'.join(f'{k}={v}' for k, v in variant.items()) or 'defaults'}",
        )
        for kind in BATCHNORM_TRAIT
        for c in REGISTRY.all(kind)
        for variant in option_variants(c)
    ]


@pytest.mark.parametrize(("kind", "name", "variant"), network_variants())
def test_network_declares_batchnorm_exactly_when_it_has_it(kind, name, variant) -> None:
    dataset = datasets_supporting(REGISTRY.get(kind, name), REGISTRY)[0]
    try:
        network, _, traits = build_network(kind, name, dataset.name, **variant)
    except ConfigError:
        return  # a variant the options model itself refuses
    batch_norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert (BATCHNORM_TRAIT[kind] in traits) == bool(batch_norms), (traits, batch_norms[:1])


def labelled_pairs(kind: str) -> list:
    return [
        pytest.param(c.name, d.name, id=f"{component_id(c)}-on-{d.name}")
        for c in REGISTRY.all(kind)
        if "label-conditioning" in default_traits(c)
        for d in datasets_supporting(c, REGISTRY)
        if "labelled" in default_traits(d)
    ]


@pytest.mark.parametrize(("name", "dataset_name"), labelled_pairs("generator"))
@settings(max_examples=5, deadline=None)
@given(n=st.integers(2, 9), seed=st.integers(0, 2**16))
def test_conditional_generator_takes_labels_and_uses_them(name, dataset_name, n, seed):
    generator, dataset, _ = build_network("generator", name, dataset_name, conditional=True)
    generator.eval()
    torch.manual_seed(seed)
    z = torch.randn(n, generator.z_dim)
    labels = torch.randint(dataset.num_classes, (n,))
    with torch.no_grad():
        out = generator(z, labels)
        other = generator(z, (labels + 1) % dataset.num_classes)
    assert list(out.shape) == [n, *dataset.shape]
    assert not torch.equal(out, other), "the labels make no difference"


@pytest.mark.parametrize(("name", "dataset_name"), labelled_pairs("discriminator"))
@settings(max_examples=5, deadline=None)
@given(n=st.integers(2, 9), seed=st.integers(0, 2**16))
def test_conditional_discriminator_takes_labels_and_uses_them(name, dataset_name, n, seed):
    discriminator, dataset, _ = build_network("discriminator", name, dataset_name, conditional=True)
    torch.manual_seed(seed)
    batch = dataset.samples[torch.randint(len(dataset), (n,))]
    labels = torch.randint(dataset.num_classes, (n,))
    logits = discriminator(batch, labels=labels)
    assert list(logits.shape) == [n] and torch.isfinite(logits).all()
    assert not torch.equal(logits, discriminator(batch, labels=(labels + 1) % dataset.num_classes))


def test_every_generator_and_discriminator_supports_some_dataset() -> None:
    unsupported = [
        component_id(c)
        for kind in ("generator", "discriminator")
        for c in REGISTRY.all(kind)
        if not datasets_supporting(c, REGISTRY)
    ]
    assert unsupported == []


# -- losses --------------------------------------------------------------------


class TinyCritic(nn.Module):
    def __init__(self, in_features: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x).flatten()


class TinyGenerator(nn.Module):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.z_dim = 3
        self.shape = shape
        self.net = nn.Sequential(nn.Linear(3, math.prod(shape)), nn.Tanh())

    def forward(self, z):
        return self.net(z).reshape(-1, *self.shape)


@pytest.mark.parametrize("name", [pytest.param(c.name, id=component_id(c)) for c in REGISTRY.all("loss")])
@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_loss_gives_finite_scalars_with_gradients_in_both_phases(name, n, seed):
    component = REGISTRY.get("loss", name)
    torch.manual_seed(seed)
    loss = component.build(component.validate({}), build_context((2,)))
    assert isinstance(loss, Loss)
    critic, generator = TinyCritic(), TinyGenerator((2,))
    real = torch.randn(n, 2)

    fake = generator(torch.randn(n, 3)).detach()
    ctx = DContext(critic, real, fake, Targets(), step=0, progress=0.0)
    d_loss = loss.d_loss(critic(real), critic(fake), ctx)
    assert d_loss.dim() == 0 and torch.isfinite(d_loss)
    d_loss.backward()
    d_grads = [p.grad for p in critic.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in d_grads)
    assert any(g.abs().sum() > 0 for g in d_grads)
    for value in loss.extra_stats().values():
        assert isinstance(value, torch.Tensor) and not value.requires_grad and torch.isfinite(value).all()
    loss.after_d_step(critic)
    assert all(torch.isfinite(p).all() for p in critic.parameters())

    critic.requires_grad_(False)
    g_ctx = GContext(real_logits=lambda: critic(real), targets=Targets(), step=0, progress=0.0)
    g_loss = loss.g_loss(critic(generator(torch.randn(n, 3))), g_ctx)
    assert g_loss.dim() == 0 and torch.isfinite(g_loss)
    g_loss.backward()
    g_grads = [p.grad for p in generator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in g_grads)
    assert any(g.abs().sum() > 0 for g in g_grads)


# -- regularizers and schedules ------------------------------------------------


@pytest.mark.parametrize("component", of_kind("regularizer"))
def test_regularizer_builds_and_keeps_the_shapes_it_declares(component) -> None:
    torch.manual_seed(0)
    dataset = load_dataset(datasets_supporting(component, REGISTRY)[0])
    shape = dataset.shape
    regularizer = component.build(component.validate(small_options(component)), build_context(shape))
    assert isinstance(regularizer, Regularizer)
    d_shape = tuple(regularizer.d_input_shape(shape))
    assert math.prod(d_shape) % math.prod(shape) == 0, (shape, d_shape)
    critic = regularizer.wrap_discriminator(TinyCritic(math.prod(d_shape)))
    generator = regularizer.wrap_generator(TinyGenerator(shape))
    assert isinstance(critic, nn.Module) and isinstance(generator, nn.Module)
    real = dataset.samples[:12]
    fake = generator(torch.randn(12, 3)).detach()
    for progress in (0.0, 0.5, 1.0):
        seen = regularizer.transform_d_input(real, progress)
        assert tuple(seen.shape[1:]) == d_shape
        assert seen.numel() == real.numel(), "D's inputs lost or gained samples"
    seen_real, seen_fake = regularizer.transform_d_input(real, 0.0), regularizer.transform_d_input(fake, 0.0)
    assert list(critic(seen_real).shape) == [seen_real.shape[0]]
    targets = regularizer.adjust_targets(Targets())
    assert isinstance(targets, Targets) and 0.0 <= targets.fake < targets.real <= 1.0
    penalty = regularizer.d_penalty(DContext(critic, seen_real, seen_fake, targets, step=0, progress=0.0))
    if penalty is not None:
        assert penalty.dim() == 0 and torch.isfinite(penalty)
    regularizer.after_d_step(critic)
    regularizer.after_g_step(generator, 1)
    sampler = regularizer.sampling_generator()
    if sampler is not None:
        with torch.no_grad():
            assert sampler(torch.randn(4, 3)).shape == generator(torch.randn(4, 3)).shape
    regularizer.load_state_dict(regularizer.state_dict())


@pytest.mark.parametrize("component", of_kind("scheduler"))
@pytest.mark.parametrize("loss", [pytest.param(c.name, id=f"with-{c.name}") for c in REGISTRY.all("loss")])
def test_schedule_builds_with_at_least_one_d_step(component, loss) -> None:
    plan = first_valid_plan(REGISTRY, scheduler={"name": component.name}, loss=loss)
    schedule = component.build(plan.scheduler.options, build_context((2,), total_steps=plan.config.steps))
    assert isinstance(schedule, Schedule)
    assert isinstance(schedule.d_steps, int) and schedule.d_steps >= 1
    assert schedule.d_steps == plan.d_steps
    for step in range(plan.config.steps + 1):
        factor = schedule.lr_multiplier(step, plan.config.steps)
        assert math.isfinite(factor) and factor >= 0


def test_schedule_takes_the_loss_recommendation_of_d_steps() -> None:
    for loss in REGISTRY.all("loss"):
        plan = first_valid_plan(REGISTRY, loss=loss.name)
        expected = loss.recommends.d_steps if loss.recommends else 1
        assert plan.d_steps == expected, loss.name


# -- datasets ------------------------------------------------------------------


@pytest.mark.parametrize("component", of_kind("dataset"))
def test_dataset_declares_one_modality(component) -> None:
    assert len(default_traits(component) & MODALITIES) == 1, default_traits(component)


@pytest.mark.parametrize("component", of_kind("dataset"))
def test_dataset_samples_match_the_declared_modality(component) -> None:
    dataset = load_dataset(component)
    traits = default_traits(component)
    assert isinstance(dataset, Dataset)
    assert len(dataset) >= 1 and dataset.samples.dtype == torch.float32
    assert torch.isfinite(dataset.samples).all()
    if "image" in traits:
        assert dataset.samples.dim() == 4
        assert dataset.samples.min() >= -1.0 and dataset.samples.max() <= 1.0
    if "vector" in traits:
        assert dataset.samples.dim() == 2
    if "labelled" in traits:
        assert dataset.labels is not None
    if dataset.labels is not None:
        assert dataset.labels.shape == (len(dataset),)
        assert dataset.num_classes > 0
        assert 0 <= int(dataset.labels.min()) and int(dataset.labels.max()) < dataset.num_classes


@pytest.mark.parametrize("component", of_kind("dataset"))
def test_dataset_options_change_what_is_built(component) -> None:
    options = small_options(component)
    if "n" in options:
        assert len(load_dataset(component)) == options["n"]
    if "size" in options:
        assert load_dataset(component).shape[-2:] == (options["size"], options["size"])


# -- metrics -------------------------------------------------------------------


def tiny_generate(dataset_component):
    """``generate(n)`` from the first registered generator that supports the dataset."""
    dataset = load_dataset(dataset_component)
    traits = default_traits(dataset_component)
    generators = [g for g in REGISTRY.all("generator") if g.requires <= traits]
    assert generators, f"no generator for dataset '{dataset_component.name}'"
    component = generators[0]
    ctx = build_context(dataset.shape, num_classes=dataset.num_classes, data_info=dataset.info)
    generator = component.build(component.validate(small_options(component)), ctx).eval()

    @torch.no_grad()
    def generate(n: int) -> torch.Tensor:
        return generator(torch.randn(n, generator.z_dim)).cpu()

    return generate, dataset


@pytest.mark.parametrize(("name", "dataset_name"), with_datasets("metric"))
def test_metric_returns_named_finite_floats(name, dataset_name) -> None:
    component = REGISTRY.get("metric", name)
    torch.manual_seed(0)
    generate, dataset = tiny_generate(REGISTRY.get("dataset", dataset_name))
    metric = component.build(component.validate(small_options(component)), build_context(dataset.shape))
    assert isinstance(metric, Metric)
    values = metric.compute(generate, dataset)
    assert isinstance(values, dict) and values
    for key, value in values.items():
        assert isinstance(key, str) and key
        assert isinstance(value, float) and math.isfinite(value), (key, value)


def test_every_metric_supports_some_dataset() -> None:
    assert [c.name for c in REGISTRY.all("metric") if not datasets_supporting(c, REGISTRY)] == []


def test_options_base_class_is_a_pydantic_model() -> None:
    # Sanity of the helper assumptions above: Options is pydantic, frozen and strict about keys.
    assert issubclass(Options, BaseModel)
    assert Options.model_config.get("frozen") is True
