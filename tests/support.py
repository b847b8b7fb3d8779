"""Shared helpers for the test suite: small options, compatible datasets, cached data.

Everything here is generic over the registry, so a newly registered plugin is
covered without editing the tests: small option values are applied only to
fields a component actually has, and only when they validate.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ganforge_core import Component, ConfigError, Dataset, Registry, RunConfig, get_registry, resolve, testing
from ganforge_core.config import Plan
from ganforge_core.testing import build_context, default_traits
from fake_datasets import FAKE_ZIP, shared_fake_root

# The values plugin authors' checks use (ganforge_core.testing.SMALL_VALUES), and:
SMALL_VALUES: Mapping[str, Any] = {
    **testing.SMALL_VALUES,
    # Datasets read from files (mnist, fashion-mnist, cifar10, folder) read tiny fake ones.
    "root": str(shared_fake_root()),
}


# Datasets read from a file that is not under root: the fake root's.
FILE_OPTIONS: Mapping[str, Mapping[str, Any]] = {"zip": {"path": str(shared_fake_root() / FAKE_ZIP)}}


def component_id(component: Component) -> str:
    return f"{component.kind}:{component.name}"


def small_options(component: Component, **extra: Any) -> dict[str, Any]:
    """The SMALL_VALUES (and FILE_OPTIONS, plus ``extra``) this component has as fields and accepts."""
    return testing.small_options(component, SMALL_VALUES, **{**FILE_OPTIONS.get(component.name, {}), **extra})


def choice(component: Component, **extra: Any) -> dict[str, Any]:
    """A ``Choice``-shaped dict for this component with small options."""
    return {"name": component.name, "options": small_options(component, **extra)}


def datasets_supporting(component: Component, registry: Registry | None = None) -> list[Component]:
    """Registered datasets whose traits meet the component's ``requires``."""
    registry = registry or get_registry()
    return [d for d in registry.all("dataset") if component.requires <= default_traits(d)]


def _freeze(options: Mapping[str, Any]) -> str:
    return json.dumps(dict(options), sort_keys=True, default=str)


@functools.cache
def _load(name: str, frozen_options: str) -> Dataset:
    component = get_registry().get("dataset", name)
    options = component.validate(json.loads(frozen_options))
    return component.build(options, build_context())


def load_dataset(component: Component) -> Dataset:
    """The dataset built with small options, loaded once per test session."""
    return _load(component.name, _freeze(small_options(component)))


def caching_registry(registry: Registry | None = None) -> Registry:
    """A copy of the registry whose datasets are built once per option set (MNIST takes ~1s)."""
    registry = registry or get_registry()
    copy = Registry()
    for component in registry.all():
        if component.kind == "dataset":
            component = dataclasses.replace(component, factory=_cached_factory(component))
        copy.add(component)
    assert not copy.problems, copy.problems
    copy.plugins = list(registry.plugins)
    return copy


def _cached_factory(component: Component) -> Any:
    cache: dict[str, Dataset] = {}

    def build(options: Any, ctx: Any) -> Dataset:
        key = options.model_dump_json()
        if key not in cache:
            cache[key] = component.factory(options, ctx)
        return cache[key]

    return build


def first_valid_plan(registry: Registry | None = None, **fixed: Any) -> Plan:
    """Resolve the first combination of registered components that is valid with ``fixed``.

    ``fixed`` holds RunConfig fields (e.g. ``scheduler=...``); generator, its
    discriminator and the dataset are searched over the registry with small options.
    """
    registry = registry or get_registry()
    problems = []
    for dataset in registry.all("dataset"):
        for generator in registry.all("generator"):
            for discriminator in registry.all("discriminator"):
                fields = {
                    "generator": choice(generator),
                    "discriminator": choice(discriminator),
                    "dataset": choice(dataset),
                    "device": "cpu",
                    "steps": 4,
                    "batch_size": 8,
                    **fixed,
                }
                try:
                    return resolve(RunConfig.model_validate(fields), registry)
                except ConfigError as exc:
                    problems.append(str(exc))
    raise AssertionError(f"no valid combination with {fixed}: {problems[:3]}")


def names(components: Iterable[Component]) -> list[str]:
    return [c.name for c in components]
