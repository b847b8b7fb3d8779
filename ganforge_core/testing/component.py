"""check_component: one registered component, by kind and name, through the check of its kind."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ganforge_core.components import KINDS, Dataset, Options
from ganforge_core.config import Choice
from ganforge_core.errors import ConfigError, GanforgeError
from ganforge_core.registry import Component, Registry
from ganforge_core.testing.data import check_dataset, check_renderer
from ganforge_core.testing.loggers import check_logger
from ganforge_core.testing.losses import check_loss
from ganforge_core.testing.metrics import check_metric
from ganforge_core.testing.networks import (
    check_conditional_discriminator,
    check_conditional_generator,
    check_declares_batchnorm,
    check_discriminator,
    check_generator,
    check_growing,
    check_per_sample,
    check_truncation,
)
from ganforge_core.testing.objects import (
    BATCHNORM_TRAIT,
    MODALITIES,
    TinyGenerator,
    _about,
    _check,
    _fail,
    _plugins,
    build_context,
    default_traits,
    small_options,
)
from ganforge_core.testing.options import check_options
from ganforge_core.testing.regularizers import check_regularizer
from ganforge_core.testing.schedules import check_schedule

if TYPE_CHECKING:
    from ganforge_core.plugins import Plugins


def _dataset_choices(
    component: Component, registry: Registry, datasets: Iterable[str | Choice | Mapping[str, Any]] | None
) -> list[tuple[str, Dataset]]:
    """The datasets to check ``component`` on, built: the ones named, else one per modality that builds here."""
    if datasets is not None:
        chosen = []
        for item in datasets:
            choice = item if isinstance(item, Choice) else Choice.model_validate(item)
            dataset = registry.get("dataset", choice.name)
            chosen.append((dataset.name, _load_dataset(dataset, {**small_options(dataset), **choice.options})))
        return chosen
    found = []
    for modality in MODALITIES:
        for dataset in registry.all("dataset"):
            traits = default_traits(dataset)
            if modality in traits and component.requires <= traits:
                try:
                    found.append((dataset.name, _load_dataset(dataset, small_options(dataset))))
                except GanforgeError:
                    continue  # needs files that are not here (mnist, cifar10, folder, ...)
                break
    _check(
        found,
        f"{component.label}: no registered dataset with the traits {sorted(component.requires)} builds here; "
        "pass datasets=[...]",
    )
    return found


def _load_dataset(component: Component, options: Mapping[str, Any]) -> Dataset:
    return component.build(component.validate(options), build_context())


def check_component(
    kind: str,
    name: str,
    *,
    options: Mapping[str, Any] | None = None,
    datasets: Iterable[str | Choice | Mapping[str, Any]] | None = None,
    plugins: Plugins | None = None,
) -> None:
    """Check the registered component ``kind``/``name`` against ganforge's contract.

    First :func:`check_options`, then what the factory builds, with
    :func:`small_options` merged with ``options``. Networks, regularizers and
    metrics are checked on each of ``datasets`` (names or ``"name:key=value"``
    choices); by default on the first registered image and vector dataset that
    meets the component's requirements and builds without files.

    ``plugins`` defaults to the installed plugins; pass
    ``Plugins(extra=[("mine", module)])`` to check a module that is not installed.
    """
    registry = _plugins(plugins).registry
    try:
        component = registry.get(kind, name)  # type: ignore[arg-type]
    except ConfigError as exc:
        # A component the registry refused is not registered: the reason is among the problems.
        problems = "; ".join(str(p) for p in registry.problems)
        raise _fail(f"{exc}" + (f"; problems loading plugins: {problems}" if problems else "")) from None
    check_options(component)
    chosen = component.validate({**small_options(component), **(options or {})})
    COMPONENT_CHECKS[component.kind](component, chosen, registry, datasets)


def _check_loss_component(component: Component, chosen: Options, registry: Registry, datasets: Any) -> None:
    loss = component.build(chosen, build_context((2,)))
    for n in (1, 7):
        with _about(f"{component.label} with a batch of {n}"):
            check_loss(loss, n=n, traits=component.traits(chosen))


def _check_schedule_component(component: Component, chosen: Options, registry: Registry, datasets: Any) -> None:
    # resolve fills in d_steps from the loss; built directly, the schedule gets one.
    if getattr(chosen, "d_steps", 1) is None:
        chosen = component.validate({**chosen.model_dump(), "d_steps": 1})
    with _about(component.label):
        check_schedule(component.build(chosen, build_context((2,))), total_steps=10, traits=component.traits(chosen))


def _check_dataset_component(component: Component, chosen: Options, registry: Registry, datasets: Any) -> None:
    with _about(component.label):
        dataset = component.build(chosen, build_context())
        check_dataset(dataset, component.traits(chosen))
        if component.render is not None:
            check_renderer(component, dataset)


def _check_logger_component(component: Component, chosen: Options, registry: Registry, datasets: Any) -> None:
    with _about(component.label), tempfile.TemporaryDirectory() as work:
        check_logger(lambda run: component.build(chosen, run), Path(work))


def _check_on_datasets(component: Component, chosen: Options, registry: Registry, datasets: Any) -> None:
    for dataset_name, dataset in _dataset_choices(component, registry, datasets):
        with _about(f"{component.label} on dataset '{dataset_name}'"):
            _check_on_dataset(component, chosen, dataset)


# How check_component checks each kind (ganforge_core.kinds.TABLE names the check of a built object).
COMPONENT_CHECKS: Mapping[str, Callable[[Component, Options, Registry, Any], None]] = {
    "generator": _check_on_datasets,
    "discriminator": _check_on_datasets,
    "loss": _check_loss_component,
    "regularizer": _check_on_datasets,
    "scheduler": _check_schedule_component,
    "dataset": _check_dataset_component,
    "metric": _check_on_datasets,
    "logger": _check_logger_component,
}
if set(COMPONENT_CHECKS) != set(KINDS):
    raise RuntimeError("ganforge_core.testing.COMPONENT_CHECKS must cover every kind")


def _whole_and_growing(
    network: torch.nn.Module,
    traits: frozenset[str],
    total_steps: int,
    check: Callable[[], None],
    forward: Callable[[], Tensor],
) -> None:
    """``check`` on the network as built, then, for the trait ``growing``, at several steps (:func:`check_growing`)."""
    check()
    if "growing" in traits:
        with _about("growing"):
            check_growing(network, total_steps, check, forward)


def _check_on_dataset(component: Component, chosen: Options, dataset: Dataset) -> None:
    kind, traits = component.kind, component.traits(chosen)
    ctx = build_context(dataset.shape, num_classes=dataset.num_classes, data_info=dataset.info)
    if kind == "generator":
        generator = component.build(chosen, ctx)
        check_declares_batchnorm(generator, kind, traits)

        def check_g() -> None:
            for n, training in ((1, True), (1, False), (5, True), (5, False)):
                check_generator(generator, dataset.shape, n, training=training, traits=traits)

        z_dim = int(getattr(generator, "z_dim"))
        _whole_and_growing(generator, traits, ctx.total_steps, check_g, lambda: generator(torch.randn(5, z_dim)))
        if "truncation" in traits:
            with _about("truncation"):
                check_truncation(generator, dataset.shape)
    elif kind == "discriminator":
        discriminator = component.build(chosen, ctx)
        check_declares_batchnorm(discriminator, kind, traits)
        if "per-sample" in traits:
            with _about("per-sample"):
                check_per_sample(discriminator, dataset.take(range(min(6, len(dataset)))))

        def check_d() -> None:
            for n in (1, 5):
                check_discriminator(discriminator, dataset.take(range(n)), traits=traits)

        _whole_and_growing(
            discriminator, traits, ctx.total_steps, check_d, lambda: discriminator(dataset.take(range(5)))
        )
    elif kind == "regularizer":
        check_regularizer(component.build(chosen, ctx), dataset.take(range(min(12, len(dataset)))), traits=traits)
    elif kind == "metric":
        tiny = TinyGenerator(dataset.shape).eval()

        @torch.no_grad()
        def generate(n: int) -> Tensor:
            samples: Tensor = tiny(torch.randn(n, tiny.z_dim))
            return samples

        check_metric(component.build(chosen, ctx), generate, dataset)
    if kind in BATCHNORM_TRAIT and "label-conditioning" in traits and dataset.labels is not None:
        conditional = build_context(
            dataset.shape, num_classes=dataset.num_classes, data_info=dataset.info, conditional=True
        )
        network = component.build(chosen, conditional)
        if kind == "generator":
            check_conditional_generator(network, dataset.shape, dataset.num_classes)
        else:
            check_conditional_discriminator(network, dataset.take(range(5)), dataset.num_classes)
            if "per-sample" in traits:
                with _about("per-sample"):
                    labels = torch.arange(6) % dataset.num_classes
                    check_per_sample(network, dataset.take(range(min(6, len(dataset)))), labels[: min(6, len(dataset))])
