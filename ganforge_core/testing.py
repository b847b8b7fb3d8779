"""Checks for plugin authors: the contract ganforge's own test suite holds every component to.

Every check raises :class:`AssertionError` with a message that names what is
wrong, so it works under pytest (or any runner) and needs nothing but ganforge:

    from ganforge_core.testing import check_component, check_isolation, smoke_train

    def test_my_loss_meets_the_contract():
        check_component("loss", "my-loss")

Three levels, from the most to the least convenient:

* :func:`check_component` checks one registered component by kind and name: its
  options model, then what it builds, on CPU, with small options and fixed seeds.
* :func:`check_isolation` builds a run exactly as ganforge does and checks that the
  D phases (D main, D reg) leave G untouched and the G phases leave D untouched; :func:`smoke_train`
  trains a few steps end to end, reloads the run, and checks an exact resume.
* ``check_generator``, ``check_loss`` and the other ``check_*`` functions check an
  object you built yourself; ganforge's own contract tests call them with inputs
  drawn by hypothesis.

Components are built with :data:`SMALL_VALUES` for the options they have and
accept (:func:`small_options`), so the checks take seconds. The checks look
components up among the installed plugins; pass ``plugins=Plugins(extra=[(name,
module)])`` to check a plugin before it is packaged. Guide: docs/testing-plugins.md.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ganforge_core.components import (
    KINDS,
    BuildContext,
    Dataset,
    DContext,
    GContext,
    Logger,
    Loss,
    Metric,
    Options,
    Regularizer,
    RunContext,
    Schedule,
    ScheduleOptions,
    Targets,
)
from ganforge_core.config import Choice, RunConfig, resolve
from ganforge_core.errors import ConfigError, GanforgeError
from ganforge_core.registry import NAME_PATTERN, Component, Registry

if TYPE_CHECKING:
    from ganforge_core.plugins import Plugins
    from ganforge_core.run import Run
    from ganforge_core.session import RunResult

__all__ = [
    "SMALL_VALUES",
    "TinyCritic",
    "TinyGenerator",
    "assert_identical",
    "build_context",
    "build_run",
    "check_component",
    "check_conditional_discriminator",
    "check_conditional_generator",
    "check_d_phase_isolated",
    "check_dataset",
    "check_declares_batchnorm",
    "check_discriminator",
    "check_g_phase_isolated",
    "check_generator",
    "check_isolation",
    "check_logger",
    "check_loss",
    "check_metric",
    "check_options",
    "check_regularizer",
    "check_renderer",
    "check_schedule",
    "default_traits",
    "small_options",
    "smoke_train",
]

# Option values that keep networks, datasets and metrics tiny, keyed by option name.
# ``size=16`` keeps DCGAN's normalised inner layer (16 -> 8 -> 4) while staying small.
SMALL_VALUES: Mapping[str, Any] = {
    "hidden": 8,
    "depth": 1,
    "width": 4,
    "z_dim": 4,
    "pieces": 2,
    "n": 256,
    "size": 16,
    "samples": 256,
}

MODALITIES = ("vector", "image")
# A network that declares one of these never trains on a batch of one: ganforge
# refuses --batch-size 1 (and gradient penalties on a BatchNorm critic) for it.
BATCHNORM_TRAIT = {"generator": "batchnorm-in-g", "discriminator": "batchnorm-in-d"}


def _fail(message: str) -> AssertionError:
    return AssertionError(message)


def _check(condition: object, message: str | Callable[[], str]) -> None:
    # An explicit raise, not ``assert``: it must hold under ``python -O`` and outside pytest.
    if not condition:
        raise _fail(message() if callable(message) else message)


# -- building blocks -------------------------------------------------------------


def small_options(component: Component, values: Mapping[str, Any] = SMALL_VALUES, **extra: Any) -> dict[str, Any]:
    """The entries of ``values`` (plus ``extra``) that ``component`` has as options and accepts."""
    fields = component.options.model_fields
    wanted = {k: v for k, v in {**values, **extra}.items() if k in fields}
    try:
        component.validate(wanted)
        return wanted
    except ConfigError:
        pass
    accepted: dict[str, Any] = {}
    for key, value in wanted.items():
        try:
            component.validate({**accepted, key: value})
        except ConfigError:
            continue
        accepted[key] = value
    return accepted


def default_traits(component: Component) -> frozenset[str]:
    """The component's traits with its default options."""
    return component.traits(component.validate({}))


def build_context(data_shape: tuple[int, ...] = (), **fields: Any) -> BuildContext:
    """A CPU :class:`BuildContext` for ``data_shape``; ``fields`` override any of its fields."""
    values: dict[str, Any] = {
        "data_shape": data_shape,
        "d_input_shape": data_shape,
        "num_classes": 0,
        "total_steps": 10,
        "batch_size": 8,
        "device": torch.device("cpu"),
        "seed": 0,
    }
    values.update(fields)
    return BuildContext(**values)


def _plugins(plugins: Plugins | None) -> Plugins:
    """``plugins``, else the installed ones (the ``ganforge`` entry points)."""
    if plugins is not None:
        return plugins
    from ganforge_core.plugins import get_plugins

    return get_plugins()


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyCritic(nn.Module):
    """A two-layer critic on flattened inputs: what :func:`check_loss` trains against."""

    def __init__(self, in_features: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.net(x)
        return logits.flatten()


class TinyGenerator(nn.Module):
    """A one-layer generator of ``shape`` with a tanh output (so images stay in [-1, 1])."""

    def __init__(self, shape: tuple[int, ...], z_dim: int = 3) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.shape = shape
        self.net = nn.Sequential(nn.Linear(z_dim, math.prod(shape)), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        samples: Tensor = self.net(z)
        return samples.reshape(-1, *self.shape)


def _finite(tensor: Tensor) -> bool:
    return bool(torch.isfinite(tensor).all())


# -- options -----------------------------------------------------------------------


def check_options(component: Component) -> None:
    """The registration and options contract that ``ganforge plugins``, the CLI and config files rely on."""
    label = component.label
    _check(NAME_PATTERN.match(component.name), f"{label}: names are lower-case letters, digits and '-'")
    _check(component.kind in KINDS, f"{label}: unknown kind; kinds are {', '.join(KINDS)}")
    _check(component.summary.strip(), f"{label}: register(..., summary=...) is empty")
    options = component.options
    _check(
        isinstance(options, type) and issubclass(options, Options),
        f"{label}: options={options!r} must subclass ganforge_core.Options",
    )
    _check(
        options.model_config.get("extra") == "forbid",
        f"{label}: options model {options.__name__} must forbid unknown keys (model_config extra='forbid')",
    )
    try:
        component.validate({"no_such_option_xyz": 1})
    except ConfigError as exc:
        _check("unknown option 'no_such_option_xyz'" in str(exc), f"{label}: an unknown option gave: {exc}")
    else:
        raise _fail(f"{label}: an unknown option 'no_such_option_xyz' was accepted")
    undescribed = [name for name, field in options.model_fields.items() if not (field.description or "").strip()]
    _check(not undescribed, f"{label}: options without Field(description=...): {', '.join(undescribed)}")
    try:
        defaults = component.validate({})
    except ConfigError as exc:
        raise _fail(f"{label}: its default options do not validate: {exc}") from None
    _check(isinstance(defaults, options), f"{label}: validate() did not return a {options.__name__}")
    # config.json must rerun the same run: defaults survive a JSON round trip.
    dumped = json.loads(json.dumps(defaults.model_dump(mode="json")))
    _check(
        component.validate(dumped) == defaults,
        f"{label}: default options change through JSON: {defaults!r} -> {dumped!r}",
    )
    traits = component.traits(defaults)
    for what, values in (("requires", component.requires), ("traits", traits)):
        bad = [t for t in values if not (isinstance(t, str) and t)]
        _check(not bad, f"{label}: {what} must be non-empty strings, got {bad!r}")
    if component.kind == "scheduler":
        _check(issubclass(options, ScheduleOptions), f"{label}: a schedule's options subclass ScheduleOptions")
    if component.kind == "dataset":
        modalities = traits & set(MODALITIES)
        _check(len(modalities) == 1, f"{label}: a dataset has exactly one of the traits image, vector: {traits}")


# -- networks ----------------------------------------------------------------------


def check_generator(
    generator: nn.Module,
    data_shape: tuple[int, ...],
    n: int = 5,
    *,
    training: bool = True,
    seed: int = 0,
    traits: Iterable[str] = (),
) -> None:
    """G maps ``n`` latents ``[n, z_dim]`` to ``n`` finite samples of ``data_shape``."""
    _check(isinstance(generator, nn.Module), f"a generator is a torch.nn.Module, got {type(generator).__name__}")
    z_dim: Any = getattr(generator, "z_dim", None)  # checked just below
    _check(
        isinstance(z_dim, int) and not isinstance(z_dim, bool) and z_dim >= 1,
        f"a generator has an integer attribute z_dim >= 1, got {z_dim!r}",
    )
    if n == 1 and training and BATCHNORM_TRAIT["generator"] in set(traits):
        return  # declared: ganforge never trains this generator on a batch of one
    generator.train(training)
    with torch.no_grad():
        out = generator(torch.randn(n, z_dim, generator=_seeded(seed)))
    mode = "training" if training else "eval"
    _check(
        isinstance(out, Tensor) and list(out.shape) == [n, *data_shape],
        lambda: (
            f"generator ({mode} mode) gave shape {list(getattr(out, 'shape', []))} for {n} latents; "
            f"expected {[n, *data_shape]}"
        ),
    )
    _check(out.is_floating_point() and _finite(out), f"generator ({mode} mode) gave non-finite or non-float samples")


def check_discriminator(discriminator: nn.Module, batch: Tensor, *, traits: Iterable[str] = ()) -> None:
    """D maps a batch ``[N, ...]`` to ``N`` finite logits, and gradients reach its parameters."""
    _check(
        isinstance(discriminator, nn.Module),
        f"a discriminator is a torch.nn.Module, got {type(discriminator).__name__}",
    )
    n = len(batch)
    if n == 1 and BATCHNORM_TRAIT["discriminator"] in set(traits):
        return  # declared: ganforge never trains this discriminator on a batch of one
    logits = discriminator(batch)
    _check(
        isinstance(logits, Tensor) and list(logits.shape) == [n],
        lambda: (
            f"discriminator gave shape {list(getattr(logits, 'shape', []))} for a batch of {n}; "
            f"expected [{n}] (one logit per sample)"
        ),
    )
    _check(_finite(logits), "discriminator gave non-finite logits")
    logits.sum().backward()
    _check(
        any(p.grad is not None for p in discriminator.parameters()),
        "no gradient reached the discriminator's parameters",
    )


def check_conditional_generator(
    generator: nn.Module, data_shape: tuple[int, ...], num_classes: int, n: int = 5, seed: int = 0
) -> None:
    """A generator built with ``conditional=True`` is called as ``G(z, labels)`` and the labels matter."""
    source = _seeded(seed)
    generator.eval()
    # getattr: nn.Module types its attributes as Tensor | Module; a generator's z_dim is an int
    z = torch.randn(n, int(getattr(generator, "z_dim")), generator=source)
    labels = torch.randint(num_classes, (n,), generator=source)
    with torch.no_grad():
        out = generator(z, labels)
        other = generator(z, (labels + 1) % num_classes)
    _check(list(out.shape) == [n, *data_shape], f"conditional generator gave shape {list(out.shape)}")
    _check(not torch.equal(out, other), "conditional generator: changing the labels changed no sample")


def check_conditional_discriminator(discriminator: nn.Module, batch: Tensor, num_classes: int, seed: int = 0) -> None:
    """A discriminator built with ``conditional=True`` is called as ``D(x, labels=labels)`` and the labels matter."""
    n = len(batch)
    labels = torch.randint(num_classes, (n,), generator=_seeded(seed))
    logits = discriminator(batch, labels=labels)
    _check(list(logits.shape) == [n] and _finite(logits), f"conditional discriminator gave {list(logits.shape)}")
    other = discriminator(batch, labels=(labels + 1) % num_classes)
    _check(not torch.equal(logits, other), "conditional discriminator: changing the labels changed no logit")


def check_declares_batchnorm(network: nn.Module, kind: str, traits: Iterable[str]) -> None:
    """A generator (discriminator) has the trait batchnorm-in-g (-d) exactly when it holds a BatchNorm layer."""
    trait = BATCHNORM_TRAIT[kind]
    batch_norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    declared = trait in set(traits)
    if batch_norms and not declared:
        raise _fail(f"{kind} holds {type(batch_norms[0]).__name__} but does not declare the trait '{trait}'")
    _check(not declared or batch_norms, f"{kind} declares '{trait}' but holds no BatchNorm layer")


# -- losses, regularizers, schedules ------------------------------------------------


def check_loss(loss: Loss, n: int = 8, seed: int = 0) -> None:
    """Both phases give finite scalars whose gradients reach D (D phase) and G (G phase), and only them."""
    _check(isinstance(loss, Loss), f"a loss subclasses ganforge_core.Loss, got {type(loss).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic, generator = TinyCritic(), TinyGenerator((2,))
        real = torch.randn(n, 2)
        fake = generator(torch.randn(n, 3)).detach()
        ctx = DContext(critic, real, fake, Targets(), step=0, progress=0.0)
        d_loss = loss.d_loss(critic(real), critic(fake), ctx)
        _check(
            isinstance(d_loss, Tensor) and d_loss.dim() == 0 and _finite(d_loss),
            f"d_loss must be a finite scalar tensor, got {d_loss!r}",
        )
        _check(d_loss.requires_grad, "d_loss has no graph back to D (was something detached?)")
        d_loss.backward()
        d_grads = [p.grad for p in critic.parameters()]
        _check(all(g is not None and _finite(g) for g in d_grads), "d_loss: D has a missing or non-finite gradient")
        _check(any(g.abs().sum() > 0 for g in d_grads if g is not None), "d_loss: every gradient to D is zero")
        for name, value in loss.extra_stats().items():
            _check(
                isinstance(value, Tensor) and not value.requires_grad and _finite(value),
                f"extra_stats()['{name}'] must be a finite tensor detached from the graph",
            )
        loss.after_d_step(critic)
        _check(all(_finite(p) for p in critic.parameters()), "after_d_step left non-finite D parameters")

        critic.requires_grad_(False)  # as in ganforge's G phase
        g_ctx = GContext(real_logits=lambda: critic(real), targets=Targets(), step=0, progress=0.0)
        g_loss = loss.g_loss(critic(generator(torch.randn(n, 3))), g_ctx)
        _check(
            isinstance(g_loss, Tensor) and g_loss.dim() == 0 and _finite(g_loss),
            f"g_loss must be a finite scalar tensor, got {g_loss!r}",
        )
        _check(g_loss.requires_grad, "g_loss has no graph back to G (was something detached?)")
        g_loss.backward()
        g_grads = [p.grad for p in generator.parameters()]
        _check(all(g is not None and _finite(g) for g in g_grads), "g_loss: G has a missing or non-finite gradient")
        _check(any(g.abs().sum() > 0 for g in g_grads if g is not None), "g_loss: every gradient to G is zero")


def check_regularizer(regularizer: Regularizer, real: Tensor, seed: int = 0) -> None:
    """Every hook point of a regularizer on a batch ``real`` of at least two samples: shapes, targets, penalty, state."""
    _check(
        isinstance(regularizer, Regularizer),
        f"a regularizer subclasses ganforge_core.Regularizer, got {type(regularizer).__name__}",
    )
    shape = tuple(real.shape[1:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        d_shape = tuple(regularizer.d_input_shape(shape))
        _check(
            math.prod(d_shape) % math.prod(shape) == 0,
            f"d_input_shape({shape}) = {d_shape} does not hold whole samples",
        )
        critic = regularizer.wrap_discriminator(TinyCritic(math.prod(d_shape)))
        generator = regularizer.wrap_generator(TinyGenerator(shape))
        _check(isinstance(critic, nn.Module), "wrap_discriminator must return a torch.nn.Module")
        _check(isinstance(generator, nn.Module), "wrap_generator must return a torch.nn.Module")
        fake = generator(torch.randn(len(real), 3)).detach()
        for progress in (0.0, 0.5, 1.0):
            seen = regularizer.transform_d_input(real, progress)
            _check(
                tuple(seen.shape[1:]) == d_shape,
                f"transform_d_input gave samples of shape {tuple(seen.shape[1:])}; d_input_shape says {d_shape}",
            )
            _check(seen.numel() == real.numel(), "transform_d_input lost or gained samples")
        seen_real, seen_fake = regularizer.transform_d_input(real, 0.0), regularizer.transform_d_input(fake, 0.0)
        _check(list(critic(seen_real).shape) == [seen_real.shape[0]], "the wrapped critic gives no logit per sample")
        targets = regularizer.adjust_targets(Targets())
        _check(
            isinstance(targets, Targets) and 0.0 <= targets.fake < targets.real <= 1.0,
            f"adjust_targets must keep 0 <= fake < real <= 1, got {targets!r}",
        )
        for attribute in ("d_penalty_every", "g_penalty_every"):
            every = getattr(regularizer, attribute)
            _check(
                isinstance(every, int) and not isinstance(every, bool) and every >= 1,
                f"{attribute} must be an int of at least 1, got {every!r}",
            )
        penalty = regularizer.d_penalty(DContext(critic, seen_real, seen_fake, targets, step=0, progress=0.0))
        if penalty is not None:
            _check(
                isinstance(penalty, Tensor) and penalty.dim() == 0 and _finite(penalty),
                f"d_penalty must return None or a finite scalar tensor, got {penalty!r}",
            )
        _check_g_penalty(regularizer, critic, generator, seen_real, targets)
        regularizer.after_d_step(critic)
        regularizer.after_g_step(generator, 1)
        sampler = regularizer.sampling_generator()
        if sampler is not None:
            with torch.no_grad():
                z = torch.randn(4, 3)
                _check(sampler(z).shape == generator(z).shape, "sampling_generator() samples differ in shape from G's")
        state = regularizer.state_dict()
        _check(isinstance(state, dict), "state_dict() must return a dict")
        regularizer.load_state_dict(state)


def _check_g_penalty(
    regularizer: Regularizer, critic: nn.Module, generator: nn.Module, seen_real: Tensor, targets: Targets
) -> None:
    """``g_penalty`` in a G phase's context: None, or a finite scalar whose gradient reaches G and not D."""
    latents = torch.randn(len(seen_real), 3)
    fake = generator(latents)
    critic.requires_grad_(False)  # as in ganforge's G phases
    try:
        ctx = GContext(
            real_logits=lambda: critic(seen_real),
            targets=targets,
            step=0,
            progress=0.0,
            generator=generator,
            latents=latents,
            fake=fake,
        )
        penalty = regularizer.g_penalty(ctx)
        if penalty is None:
            return
        _check(
            isinstance(penalty, Tensor) and penalty.dim() == 0 and _finite(penalty),
            f"g_penalty must return None or a finite scalar tensor, got {penalty!r}",
        )
        _check(penalty.requires_grad, "g_penalty has no graph back to G (was something detached?)")
        generator.zero_grad(set_to_none=True)
        penalty.backward()
    finally:
        critic.requires_grad_(True)
    g_grads = [p.grad for p in generator.parameters()]
    _check(any(g is not None for g in g_grads), "g_penalty: no gradient reaches G")
    _check(all(g is None or _finite(g) for g in g_grads), "g_penalty: G has a non-finite gradient")
    _check(all(p.grad is None for p in critic.parameters()), "g_penalty wrote D's gradients")


def check_schedule(schedule: Schedule, total_steps: int = 10) -> None:
    """At least one D step per G step, and a finite, non-negative learning-rate multiplier at every step."""
    _check(isinstance(schedule, Schedule), f"a schedule subclasses ganforge_core.Schedule, got {type(schedule)}")
    _check(
        isinstance(schedule.d_steps, int) and schedule.d_steps >= 1,
        f"schedule.d_steps must be an int >= 1, got {schedule.d_steps!r}",
    )
    for step in range(total_steps + 1):
        factor = schedule.lr_multiplier(step, total_steps)
        _check(
            math.isfinite(factor) and factor >= 0,
            f"lr_multiplier({step}, {total_steps}) = {factor}; must be finite and >= 0",
        )


def check_dataset(dataset: Dataset, traits: Iterable[str]) -> None:
    """Float32 finite samples matching the declared modality; labels in range when there are any."""
    traits = set(traits)
    _check(isinstance(dataset, Dataset), f"a dataset factory returns ganforge_core.Dataset, got {type(dataset)}")
    samples = dataset.samples
    _check(len(dataset) >= 1, "the dataset is empty")
    _check(samples.dtype == torch.float32, f"samples must be float32, got {samples.dtype}")
    _check(_finite(samples), "the dataset has non-finite samples")
    if "image" in traits:
        _check(samples.dim() == 4, f"an image dataset holds [N, C, H, W], got {list(samples.shape)}")
        _check(samples.min() >= -1.0 and samples.max() <= 1.0, "image samples must lie in [-1, 1]")
    if "vector" in traits:
        _check(samples.dim() == 2, f"a vector dataset holds [N, D], got {list(samples.shape)}")
    if "labelled" in traits:
        _check(dataset.labels is not None, "a dataset with the trait 'labelled' must return labels")
    if dataset.labels is not None:
        labels = dataset.labels
        _check(labels.shape == (len(dataset),), f"labels must have shape [{len(dataset)}], got {list(labels.shape)}")
        _check(dataset.num_classes > 0, "a dataset with labels sets num_classes")
        _check(
            0 <= int(labels.min()) and int(labels.max()) < dataset.num_classes,
            f"labels must lie in [0, {dataset.num_classes})",
        )


def check_renderer(component: Component, dataset: Dataset, n: int = 64) -> None:
    """The dataset's own renderer (``register(..., render=...)``) draws ``n`` of its samples into a file."""
    from ganforge_core.reporting import render_samples

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "samples.png"
        try:
            render_samples(dataset.samples[:n], path, info=dataset.info, dataset=component)
        except GanforgeError as exc:
            raise _fail(str(exc)) from None
        _check(path.stat().st_size > 0, f"{component.label}: its renderer wrote an empty {path.name}")


def check_metric(metric: Metric, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
    """``compute`` returns a non-empty dict of names to finite floats; returns it."""
    _check(isinstance(metric, Metric), f"a metric subclasses ganforge_core.Metric, got {type(metric).__name__}")
    values = metric.compute(generate, dataset)
    _check(isinstance(values, dict) and values, f"compute() must return a non-empty dict, got {values!r}")
    for key, value in values.items():
        _check(isinstance(key, str) and key, f"metric value names are non-empty strings, got {key!r}")
        _check(
            isinstance(value, float) and math.isfinite(value),
            f"metric value '{key}' must be a finite float, got {value!r}",
        )
    return values


# -- one registered component ------------------------------------------------------


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
            check_loss(loss, n=n)


def _check_schedule_component(component: Component, chosen: Options, registry: Registry, datasets: Any) -> None:
    # resolve fills in d_steps from the loss; built directly, the schedule gets one.
    if getattr(chosen, "d_steps", 1) is None:
        chosen = component.validate({**chosen.model_dump(), "d_steps": 1})
    with _about(component.label):
        check_schedule(component.build(chosen, build_context((2,))), total_steps=10)


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


def check_logger(build: Callable[[RunContext], Logger], run_dir: Path) -> None:
    """A logger starts from a :class:`RunContext`, takes every record a run sends it, and closes.

    ``build(run)`` makes the logger (``lambda run: MyLogger(options, run)``). It is
    fed what a short run feeds it, in order: statistics, a sample picture, a
    checkpoint path, the end with results, then ``close``.
    """
    from PIL import Image

    generator = TinyGenerator((2,))
    run = RunContext(
        config=RunConfig(generator="mlp", dataset="ring-8", steps=2, out=run_dir),
        run_dir=run_dir,
        device=torch.device("cpu"),
        start_step=0,
        generator=generator,
        discriminator=TinyCritic(2),
        dataset=Dataset(torch.zeros(4, 2)),
    )
    logger = build(run)
    for method in ("log", "samples", "checkpoint", "end", "close"):
        _check(callable(getattr(logger, method, None)), f"the logger has no method {method}(); subclass ganforge_core.Logger")
    picture = run_dir / "samples-00000001.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(picture)
    checkpoint = run_dir / "checkpoint-00000001.pt"
    checkpoint.write_bytes(b"")
    logger.log(1, {"loss/d": 1.0, "loss/g": 0.5})
    logger.samples(1, picture)
    logger.checkpoint(1, checkpoint)
    logger.log(2, {"loss/d": 0.9, "loss/g": 0.6})
    logger.end(2, {"metric/value": 0.25})
    logger.close()


@contextmanager
def _about(what: str) -> Iterator[None]:
    """Prefix the message of an AssertionError raised inside with ``what``."""
    try:
        yield
    except AssertionError as exc:
        raise _fail(f"{what}: {exc}") from None


def _check_on_dataset(component: Component, chosen: Options, dataset: Dataset) -> None:
    kind, traits = component.kind, component.traits(chosen)
    ctx = build_context(dataset.shape, num_classes=dataset.num_classes, data_info=dataset.info)
    if kind == "generator":
        generator = component.build(chosen, ctx)
        check_declares_batchnorm(generator, kind, traits)
        for n, training in ((1, True), (1, False), (5, True), (5, False)):
            check_generator(generator, dataset.shape, n, training=training, traits=traits)
    elif kind == "discriminator":
        discriminator = component.build(chosen, ctx)
        check_declares_batchnorm(discriminator, kind, traits)
        for n in (1, 5):
            check_discriminator(discriminator, dataset.samples[:n], traits=traits)
    elif kind == "regularizer":
        check_regularizer(component.build(chosen, ctx), dataset.samples[:12])
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
            check_conditional_discriminator(network, dataset.samples[:5], dataset.num_classes)


# -- a whole run -------------------------------------------------------------------


def _small_config(config: RunConfig, registry: Registry) -> RunConfig:
    """``config`` with :data:`SMALL_VALUES` under every component's own options."""
    data = config.model_dump()

    def shrink(kind: str, choice: dict[str, Any] | None) -> dict[str, Any] | None:
        if choice is None:
            return None
        try:
            component = registry.get(kind, choice["name"])  # type: ignore[arg-type]
        except ConfigError:
            return choice  # resolve reports the unknown name
        return {"name": choice["name"], "options": {**small_options(component), **choice["options"]}}

    if data["discriminator"] is None and data["generator"]["name"] in registry.names("discriminator"):
        data["discriminator"] = {"name": data["generator"]["name"], "options": {}}
    for kind, key in (("generator", "generator"), ("discriminator", "discriminator"), ("loss", "loss")):
        data[key] = shrink(kind, data[key])
    data["scheduler"] = shrink("scheduler", data["scheduler"])
    data["dataset"] = shrink("dataset", data["dataset"])
    data["regularizers"] = [shrink("regularizer", r) for r in data["regularizers"]]
    if data["metrics"] is not None:
        data["metrics"] = [shrink("metric", m) for m in data["metrics"]]
    return RunConfig.model_validate(data)


def _config(
    config: RunConfig | Mapping[str, Any] | None, fields: Mapping[str, Any], defaults: Mapping[str, Any]
) -> RunConfig:
    base = config.model_dump(exclude_unset=True) if isinstance(config, RunConfig) else dict(config or {})
    return RunConfig.model_validate({**defaults, **base, **fields})


def build_run(config: RunConfig, *, plugins: Plugins | None = None, run_dir: Path | None = None) -> Run:
    """The run's objects built exactly as ``ganforge run`` builds them: dataset, networks, regularizers, engine.

    Nothing is written: ``run_dir`` is only recorded. Raises ConfigError for a combination ganforge refuses.
    """
    from ganforge_core.run import Run

    plugins = _plugins(plugins)
    plan = resolve(config, plugins.registry)
    return Run(plan, plugins, run_dir or Path(tempfile.gettempdir()) / "ganforge-testing-never-written")


def _parameters(module: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _gradients(module: nn.Module) -> dict[str, Tensor | None]:
    return {name: None if p.grad is None else p.grad.clone() for name, p in module.named_parameters()}


def assert_identical(before: Any, after: Any, where: str = "") -> None:
    """Bit-identical tensors (NaN equal to NaN) inside nested dicts, lists and tuples."""
    if isinstance(before, Tensor):
        _check(isinstance(after, Tensor), f"{where}: a tensor became {after!r}")
        try:
            torch.testing.assert_close(after, before, rtol=0, atol=0, equal_nan=True)
        except AssertionError as exc:
            raise _fail(f"{where} changed: {exc}") from None
    elif isinstance(before, dict):
        _check(isinstance(after, dict) and set(before) == set(after), lambda: f"{where}: keys changed")
        for key in before:
            assert_identical(before[key], after[key], f"{where}.{key}")
    elif isinstance(before, list | tuple):
        _check(isinstance(after, list | tuple) and len(before) == len(after), f"{where}: length changed")
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            assert_identical(b, a, f"{where}[{i}]")
    else:
        _check(before == after, f"{where}: {before!r} -> {after!r}")


def _next_batch(run: Run) -> tuple[Tensor, dict[str, Any]]:
    """A real batch and, in conditional runs, its labels as the phases take them."""
    batch = run.engine.batches.draw()
    return batch.samples, ({} if batch.labels is None else {"labels": batch.labels})


def _adam_steps(optimizer: torch.optim.Optimizer) -> int:
    steps = {int(s["step"]) for s in optimizer.state_dict()["state"].values()}
    _check(len(steps) <= 1, f"parameters of one optimizer at different steps: {steps}")
    return steps.pop() if steps else 0


def _lazy_phases(run: Run, network: str) -> list[tuple[str, Callable[..., dict[str, Tensor]]]]:
    """The run's reg phases of ``network`` ("D" or "G"), one per lazy interval."""
    engine = run.engine
    phase, intervals = (
        (engine.d_reg_phase, engine.d_intervals) if network == "D" else (engine.g_reg_phase, engine.g_intervals)
    )
    return [(f"{network} reg phase (every {k})", functools.partial(phase, interval=k)) for k in intervals]


def check_d_phase_isolated(run: Run, step: int = 0) -> None:
    """Each D phase of ``run`` (D main, then D reg for each lazy interval) trains D and leaves
    G's weights, gradients and optimizer state bit-identical."""
    for where, phase in [("D phase", run.engine.d_phase), *_lazy_phases(run, "D")]:
        _check_d_isolated(run, step, where, phase, main=where == "D phase")


def _check_d_isolated(
    run: Run, step: int, where: str, phase: Callable[..., dict[str, Tensor]], *, main: bool
) -> None:
    engine = run.engine
    g_params, g_grads = _parameters(run.generator), _gradients(run.generator)
    opt_g = copy.deepcopy(engine.opt_g.state_dict())
    d_params, opt_d_steps = _parameters(run.discriminator), _adam_steps(engine.opt_d)
    real, labels = _next_batch(run)
    stats = phase(real, step, **labels)

    assert_identical(g_params, _parameters(run.generator), f"{where}: G parameters")
    assert_identical(g_grads, _gradients(run.generator), f"{where}: G grads")
    assert_identical(opt_g, engine.opt_g.state_dict(), f"{where}: G optimizer state")
    if not main and not stats:
        return  # every penalty of this interval returned None: no update
    d_grads = _gradients(run.discriminator)
    trainable = {n for n, p in run.discriminator.named_parameters() if p.requires_grad}
    _check(trainable, "D has no trainable parameters")
    missing = [n for n in trainable if d_grads[n] is None]
    _check(not missing, f"{where}: D parameters without a gradient: {missing}")
    _check(_adam_steps(engine.opt_d) == opt_d_steps + 1, f"{where}: D's optimizer did not step exactly once")
    after = _parameters(run.discriminator)
    if _any_nonzero(d_grads, trainable):
        _check(any(not torch.equal(d_params[n], after[n]) for n in trainable), f"{where}: no D parameter moved")


def check_g_phase_isolated(run: Run, step: int = 0) -> None:
    """A D phase, then each G phase (G main, then G reg for each lazy interval): each trains G
    (one optimizer step) and leaves D bit-identical and trainable."""
    for where, phase in [("G phase", run.engine.g_phase), *_lazy_phases(run, "G")]:
        _check_g_isolated(run, step, where, phase, main=where == "G phase")


def _check_g_isolated(
    run: Run, step: int, where: str, phase: Callable[..., dict[str, Tensor]], *, main: bool
) -> None:
    engine = run.engine
    real, labels = _next_batch(run)
    engine.d_phase(real, step, **labels)  # D now has gradients and optimizer state to protect
    d_params, d_grads = _parameters(run.discriminator), _gradients(run.discriminator)
    _check(any(g is not None for g in d_grads.values()), "the D phase left D without gradients")
    opt_d = copy.deepcopy(engine.opt_d.state_dict())
    opt_g_steps = _adam_steps(engine.opt_g)
    g_params = _parameters(run.generator)
    requires_grad = {n: p.requires_grad for n, p in run.discriminator.named_parameters()}

    stats = phase(real, step, **labels)

    assert_identical(d_params, _parameters(run.discriminator), f"{where}: D parameters")
    assert_identical(d_grads, _gradients(run.discriminator), f"{where}: D grads")
    assert_identical(opt_d, engine.opt_d.state_dict(), f"{where}: D optimizer state")
    _check(
        {n: p.requires_grad for n, p in run.discriminator.named_parameters()} == requires_grad,
        f"{where}: D's requires_grad flags were not restored",
    )
    _check(all(requires_grad.values()), f"D parameters left frozen after the {where}")
    if not main and not stats:
        return  # every penalty of this interval returned None: no update
    g_trainable = [n for n, p in run.generator.named_parameters() if p.requires_grad]
    g_grads = _gradients(run.generator)
    missing = [n for n in g_trainable if g_grads[n] is None]
    _check(not missing, f"{where}: G parameters without a gradient: {missing}")
    _check(_adam_steps(engine.opt_g) == opt_g_steps + 1, f"{where}: G's optimizer did not step exactly once")
    after = _parameters(run.generator)
    if _any_nonzero(g_grads, g_trainable):
        _check(any(not torch.equal(g_params[n], after[n]) for n in g_trainable), f"{where}: no G parameter moved")


def _any_nonzero(grads: Mapping[str, Tensor | None], names: Iterable[str]) -> bool:
    """Whether any gradient is non-zero. A tiny random D can be flat around a batch (every unit
    of a layer inactive for it): G then gets exact zeros, and an Adam step on zeros moves nothing."""
    return any(grads[n] is not None and bool(grads[n].ne(0).any()) for n in names)  # type: ignore[union-attr]


_RUN_DEFAULTS: Mapping[str, Any] = {"steps": 4, "batch_size": 8, "device": "cpu"}


def check_isolation(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    warmup: int = 1,
    small: bool = True,
    plugins: Plugins | None = None,
    **fields: Any,
) -> None:
    """Gradient isolation for a combination of components, given as a RunConfig, a dict or keywords.

    ``check_isolation(generator="resmlp", discriminator="mlp", loss="rsgan", dataset="ring-8",
    regularizers=["r1"])`` builds the run as ganforge would (on CPU, with small
    options unless ``small=False``), trains ``warmup`` full steps so gradients and
    optimizer states are not empty, then checks each D phase and each G phase (the
    reg phases of lazy penalties included).
    """
    plugins = _plugins(plugins)
    run_config = _config(config, fields, _RUN_DEFAULTS)
    if small:
        run_config = _small_config(run_config, plugins.registry)
    for check in (check_d_phase_isolated, check_g_phase_isolated):
        run = build_run(run_config, plugins=plugins)
        for step in range(warmup):
            run.engine.step(step)
        check(run, warmup)


def smoke_train(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    out: Path,
    small: bool = True,
    check_resume: bool = True,
    plugins: Plugins | None = None,
    **fields: Any,
) -> RunResult:
    """Train a few steps end to end on CPU into ``out/run`` and check what the run wrote; returns its result.

    Checks the run directory (configuration, checkpoint, samples, ``metrics.jsonl``
    with finite statistics, finite final metrics), reloads the run from its
    checkpoint and draws samples of the data's shape. With ``check_resume``, also
    trains half the steps into ``out/resumed``, resumes it to the end and checks
    that it reaches bit-identical weights, as ganforge promises on the CPU.
    """
    from ganforge_core import checkpoint as ckpt
    from ganforge_core.session import train
    from ganforge_core.trained import load_trained

    plugins = _plugins(plugins)
    defaults = {**_RUN_DEFAULTS, "log_every": 1, "sample_every": 0, "checkpoint_every": 0}
    run_config = _config(config, fields, defaults)
    if small:
        run_config = _small_config(run_config, plugins.registry)
    out = Path(out)
    steps = run_config.steps

    result = train(run_config.model_copy(update={"out": out / "run"}), plugins=plugins, quiet=True)
    run_dir = result.run_dir
    _check(result.step == steps, f"the run stopped at step {result.step}, not {steps}")
    for name in ("config.json", "config.toml", "metrics.jsonl"):
        _check((run_dir / name).is_file(), f"the run wrote no {name}")
    _check(result.checkpoint.is_file(), f"no checkpoint at {result.checkpoint}")
    _check(result.samples.is_file() and result.samples.stat().st_size > 0, f"no samples at {result.samples}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    _check(records, "metrics.jsonl is empty")
    for record in records:
        bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
        _check(not bad, f"metrics.jsonl at step {record.get('step')}: non-finite {bad}")
    bad_results = {k: v for k, v in result.results.items() if not (isinstance(v, float) and math.isfinite(v))}
    _check(not bad_results, f"non-finite final metrics: {bad_results}")

    reloaded = load_trained(run_dir, plugins, device="cpu")
    samples = reloaded.draw(4, seed=0)
    _check(
        list(samples.shape) == [4, *reloaded.data_shape] and _finite(samples),
        f"samples of the reloaded run: shape {list(samples.shape)}, expected {[4, *reloaded.data_shape]}",
    )

    if check_resume and steps >= 2:
        resumed_dir = out / "resumed"
        train(run_config.model_copy(update={"out": resumed_dir, "steps": steps // 2}), plugins=plugins, quiet=True)
        train(None, resume=resumed_dir, overrides={"steps": steps}, plugins=plugins, quiet=True)
        straight = ckpt.load_safe(result.checkpoint)
        resumed = ckpt.load_safe(ckpt.checkpoint_path(resumed_dir, steps))
        for key in ("generator", "discriminator", "regularizers", "opt_g", "opt_d"):
            assert_identical(straight[key], resumed[key], f"resumed run: {key}")
    return result
