"""The contract every registered component meets, parametrized over the registry.

A new plugin is tested by being registered: ids read ``generator:dcgan``,
``discriminator:mlp-on-ring-8`` and so on. The checks themselves are the public
``ganforge_core.testing`` functions that plugin authors call; here hypothesis
draws their inputs.
"""

from __future__ import annotations

import itertools
import typing
from typing import Literal

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ganforge_core import KINDS, ConfigError, Options, get_registry
from ganforge_core.testing import (
    BATCHNORM_TRAIT,
    check_conditional_discriminator,
    check_conditional_generator,
    check_dataset,
    check_declares_batchnorm,
    check_discriminator,
    check_generator,
    check_loss,
    check_metric,
    check_options,
    check_regularizer,
    check_schedule,
)
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
def test_registration_and_options_meet_the_contract(component) -> None:
    # Options subclass Options, forbid unknown keys, describe every field and survive
    # JSON; names, summaries, traits; schedules' and datasets' extra rules.
    check_options(component)


@pytest.mark.parametrize("component", [pytest.param(c, id=component_id(c)) for c in ALL])
def test_small_test_options_validate(component) -> None:
    component.validate(small_options(component))


# -- generators and discriminators ----------------------------------------------

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
    # A BatchNorm generator is not run on a batch of one in training mode: ganforge never does.
    check_generator(generator, dataset.shape, n, training=training, seed=seed, traits=traits)


@pytest.mark.parametrize(("name", "dataset_name"), with_datasets("discriminator"))
@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 2**16))
@example(n=1, seed=0)
def test_discriminator_gives_one_logit_per_sample(name, dataset_name, n, seed):
    discriminator, dataset, traits = build_network("discriminator", name, dataset_name)
    torch.manual_seed(seed)
    batch = dataset.take(torch.randint(len(dataset), (n,)))
    check_discriminator(discriminator, batch, traits=traits)


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
    check_declares_batchnorm(network, kind, traits)


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
    check_conditional_generator(generator, dataset.shape, dataset.num_classes, n, seed)


@pytest.mark.parametrize(("name", "dataset_name"), labelled_pairs("discriminator"))
@settings(max_examples=5, deadline=None)
@given(n=st.integers(2, 9), seed=st.integers(0, 2**16))
def test_conditional_discriminator_takes_labels_and_uses_them(name, dataset_name, n, seed):
    discriminator, dataset, _ = build_network("discriminator", name, dataset_name, conditional=True)
    torch.manual_seed(seed)
    batch = dataset.take(torch.randint(len(dataset), (n,)))
    check_conditional_discriminator(discriminator, batch, dataset.num_classes, seed)


def test_every_generator_and_discriminator_supports_some_dataset() -> None:
    unsupported = [
        component_id(c)
        for kind in ("generator", "discriminator")
        for c in REGISTRY.all(kind)
        if not datasets_supporting(c, REGISTRY)
    ]
    assert unsupported == []


# -- losses --------------------------------------------------------------------


@pytest.mark.parametrize("name", [pytest.param(c.name, id=component_id(c)) for c in REGISTRY.all("loss")])
@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_loss_gives_finite_scalars_with_gradients_in_both_phases(name, n, seed):
    component = REGISTRY.get("loss", name)
    loss = component.build(component.validate({}), build_context((2,)))
    check_loss(loss, n, seed)


# -- regularizers and schedules ------------------------------------------------


@pytest.mark.parametrize("component", of_kind("regularizer"))
def test_regularizer_builds_and_keeps_the_shapes_it_declares(component) -> None:
    torch.manual_seed(0)
    dataset = load_dataset(datasets_supporting(component, REGISTRY)[0])
    shape = dataset.shape
    regularizer = component.build(component.validate(small_options(component)), build_context(shape))
    check_regularizer(regularizer, dataset.take(range(12)))


@pytest.mark.parametrize("component", of_kind("scheduler"))
@pytest.mark.parametrize("loss", [pytest.param(c.name, id=f"with-{c.name}") for c in REGISTRY.all("loss")])
def test_schedule_builds_with_at_least_one_d_step(component, loss) -> None:
    plan = first_valid_plan(REGISTRY, scheduler={"name": component.name}, loss=loss)
    schedule = component.build(plan.scheduler.options, build_context((2,), total_steps=plan.config.steps))
    check_schedule(schedule, plan.config.steps)
    assert schedule.d_steps == plan.d_steps


def test_schedule_takes_the_loss_recommendation_of_d_steps() -> None:
    for loss in REGISTRY.all("loss"):
        plan = first_valid_plan(REGISTRY, loss=loss.name)
        expected = loss.recommends.d_steps if loss.recommends else 1
        assert plan.d_steps == expected, loss.name


# -- datasets ------------------------------------------------------------------


@pytest.mark.parametrize("component", of_kind("dataset"))
def test_dataset_samples_match_the_declared_modality(component) -> None:
    check_dataset(load_dataset(component), default_traits(component))


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


# Metrics that run a network on weights the user supplies, which the suite never downloads;
# Inception v3 at 299x299 is also too slow for 256 samples on every image dataset. Their
# compute() is checked on a random-weights file and a few samples in tests/test_inception.py.
NEEDS_WEIGHTS_FILE = {"inception-fid", "inception-kid"}


@pytest.mark.parametrize(("name", "dataset_name"), with_datasets("metric"))
def test_metric_returns_named_finite_floats(name, dataset_name) -> None:
    if name in NEEDS_WEIGHTS_FILE:
        pytest.skip("needs an Inception weights file; tests/test_inception.py computes it on one")
    component = REGISTRY.get("metric", name)
    torch.manual_seed(0)
    generate, dataset = tiny_generate(REGISTRY.get("dataset", dataset_name))
    metric = component.build(component.validate(small_options(component)), build_context(dataset.shape))
    check_metric(metric, generate, dataset)


def test_every_metric_supports_some_dataset() -> None:
    assert [c.name for c in REGISTRY.all("metric") if not datasets_supporting(c, REGISTRY)] == []


def test_options_base_class_is_a_pydantic_model() -> None:
    # Sanity of the helper assumptions above: Options is pydantic, frozen and strict about keys.
    assert issubclass(Options, BaseModel)
    assert Options.model_config.get("frozen") is True
