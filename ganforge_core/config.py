"""The run configuration: what the user asks for, and its resolution against the registry.

:class:`RunConfig` is the typed, user-facing model (the CLI builds one from its
flags). :func:`resolve` checks every name, option and combination before
anything is built and returns a :class:`Plan` whose ``config`` has every default
filled in: written to the run directory, it reruns the same run.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ganforge_core.components import (
    Kind,
    Options,
    Recommendation,
    ResolveContext,
    ScheduleOptions,
    fits_64_bits,
    numbers_only,
)
from ganforge_core.errors import ConfigError
from ganforge_core.registry import Component, Registry


SEED_LIMIT = 2**32  # seeds are 32-bit: 0 <= seed < SEED_LIMIT (run --seed, sample --seed)


def parse_choice(text: str) -> dict[str, Any]:
    """``"name:key=value,key=value"`` -> ``{"name": ..., "options": {...}}``."""
    name, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"'{item}' in '{text}' is not key=value (form: NAME:key=value,key=value)")
        if key.strip() in options:
            raise ValueError(f"option '{key.strip()}' is given twice in '{text}'; give each option once")
        options[key.strip()] = value.strip()
    return {"name": name.strip(), "options": options}


class Choice(BaseModel):
    """A component by name with its options. Also accepts ``"name:key=value,..."``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="registered component name")
    options: dict[str, Any] = Field(default_factory=dict, description="component options")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return parse_choice(value) if isinstance(value, str) else value

    def __str__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}:{opts}" if opts else self.name


@dataclass(frozen=True)
class Flag:
    """How a :class:`RunConfig` field is given on the command line (``Annotated`` metadata).

    ``ganforge run``'s options are generated from these: a bool field becomes
    ``--x/--no-x`` (unless ``negatable`` is false), a list field a repeatable option,
    a tuple field one comma-separated value. ``derived`` says in the help what a
    ``None`` default becomes; ``empty`` is the word that gives an empty list;
    ``metavar`` is the value's placeholder in the help, where the type's is unclear.
    """

    name: str
    derived: str | None = None
    metavar: str | None = None
    empty: str | None = None
    negatable: bool = True


# A component as a caller may give it: a Choice, "name" / "name:key=value,...", or {"name": ..., "options": {...}}.
ChoiceInput: TypeAlias = "Choice | str | Mapping[str, Any]"


# The RunConfig fields `ganforge run --resume` may change: none changes what is trained on or how.
RESUME_CHANGES = frozenset({"steps", "device", "dist_backend", "data_mode", "data_workers"})

class RunConfig(BaseModel):
    """Everything that defines a run. ``None`` means: derive it from the other choices.

    Each field is also a ``ganforge run`` flag: its :class:`Flag` metadata names it, and
    its description is the flag's help (``ganforge_core.commands.training`` reads both).
    Numbers are finite, ints fit in 64 bits, and ``true`` is no number (as in component options).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    _numbers_only = field_validator("*", mode="before")(classmethod(numbers_only))
    _fits_64_bits = field_validator("*", mode="after")(fits_64_bits)

    generator: Annotated[Choice, Flag("--gen")] = Field(
        default=Choice(name="dcgan"), description="Generator: NAME or NAME:key=value,... (see 'ganforge plugins')."
    )
    discriminator: Annotated[Choice | None, Flag("--disc", derived="the generator's namesake")] = Field(
        default=None, description="Discriminator."
    )
    loss: Annotated[Choice, Flag("--loss")] = Field(
        default=Choice(name="non-saturating"), description="Adversarial loss."
    )
    regularizers: Annotated[list[Choice], Flag("--reg")] = Field(
        default_factory=list, description="Regularizers, applied in order; repeat the flag for several."
    )
    scheduler: Annotated[Choice, Flag("--sched")] = Field(
        default=Choice(name="constant"), description="Training schedule."
    )
    dataset: Annotated[Choice, Flag("--data")] = Field(default=Choice(name="mnist-5k"), description="Dataset.")
    metrics: Annotated[
        list[Choice] | None,
        Flag("--metric", derived="every metric the dataset supports, except opt-in ones", empty="none"),
    ] = Field(default=None, description="Metrics computed at the end; repeat the flag for several.")
    conditional: Annotated[bool, Flag("--conditional", negatable=False)] = Field(
        default=False, description="Class-conditional G and D, fed the dataset's labels (needs a labelled dataset)."
    )
    mirror: Annotated[bool, Flag("--mirror", negatable=False)] = Field(
        default=False,
        description="Add every image flipped left-right (stylegan2-ada's --mirror): on the device, image data only.",
    )
    data_mode: Annotated[Literal["auto", "resident", "streamed"], Flag("--data-mode")] = Field(
        default="auto",
        description="Keep the data on the training device, or stream it through worker processes; "
        "auto: resident when it fits in half the free memory.",
    )
    data_workers: Annotated[int | None, Flag("--data-workers", derived="min(4, CPUs - 1)")] = Field(
        default=None, ge=0, description="Worker processes that read streamed batches (0: the training process)."
    )
    steps: Annotated[int, Flag("--steps")] = Field(
        default=1500, ge=1, description="G steps to train (each after the schedule's D steps); or give --epochs."
    )
    epochs: Annotated[float | None, Flag("--epochs", derived="none: --steps sets the length")] = Field(
        default=None,
        gt=0,
        description="Passes over the dataset to train, instead of --steps: ceil(epochs x samples / "
        "(batch size x D steps)) G steps, worked out once the dataset is loaded and shown as the run starts.",
    )
    batch_size: Annotated[int, Flag("--batch-size")] = Field(
        default=64, ge=1, description="Real samples per D step; under torchrun the global batch, split over the ranks."
    )
    lr_g: Annotated[float | None, Flag("--lr-g", derived="the loss's")] = Field(
        default=None, gt=0, allow_inf_nan=False, description="G learning rate."
    )
    lr_d: Annotated[float | None, Flag("--lr-d", derived="the loss's")] = Field(
        default=None, gt=0, allow_inf_nan=False, description="D learning rate."
    )
    betas: Annotated[tuple[float, float] | None, Flag("--betas", derived="the loss's", metavar="B1,B2")] = Field(
        default=None, description="Adam betas."
    )
    seed: Annotated[int, Flag("--seed")] = Field(
        default=0, ge=0, lt=SEED_LIMIT, description="Seed of every random number generator (32-bit)."
    )
    device: Annotated[str, Flag("--device")] = Field(default="auto", description="auto, cpu, cuda or cuda:N.")
    out: Annotated[Path | None, Flag("--out", derived="runs/<time>-<gen>-<loss>-<data>")] = Field(
        default=None, description="Run directory."
    )
    log_every: Annotated[int, Flag("--log-every")] = Field(
        default=50, ge=1, description="Steps between logged statistics."
    )
    sample_every: Annotated[int, Flag("--sample-every")] = Field(
        default=500, ge=0, description="Steps between sample grids (0: only at the end)."
    )
    checkpoint_every: Annotated[int, Flag("--checkpoint-every")] = Field(
        default=500, ge=0, description="Steps between checkpoints (0: only at the end)."
    )
    keep_checkpoints: Annotated[int, Flag("--keep-checkpoints")] = Field(
        default=2, ge=1, description="Checkpoints kept in the run directory."
    )
    loggers: Annotated[list[Choice], Flag("--logger")] = Field(
        default_factory=list,
        description="Loggers besides metrics.jsonl, which is always written: tensorboard, or one a plugin adds "
        "(see 'ganforge plugins'); repeat or comma-separate.",
    )
    on_nan: Annotated[Literal["stop", "skip"], Flag("--on-nan")] = Field(
        default="stop",
        description="A non-finite loss: stop (keep the last good checkpoint) or skip that update and count it.",
    )
    precision: Annotated[Literal["auto", "fp32", "bf16"], Flag("--precision")] = Field(
        default="auto", description="Autocast dtype of forward passes; auto: bf16 on CUDA, fp32 elsewhere."
    )
    cuda_graph: Annotated[bool, Flag("--cuda-graph")] = Field(
        default=True, description="On CUDA, capture the whole step in a CUDA graph when every component allows it."
    )
    channels_last: Annotated[bool, Flag("--channels-last")] = Field(
        default=True, description="On CUDA and the CPU, keep image batches and conv weights channels-last (on the CPU not "
        "where D pays an input-gradient penalty every D step or a network has grouped convolutions: "
        "measured slower there)."
    )
    fused_adam: Annotated[bool, Flag("--fused-adam")] = Field(
        default=True, description="On CUDA and the CPU, use the fused Adam implementation."
    )
    cudnn_benchmark: Annotated[bool, Flag("--cudnn-benchmark")] = Field(
        default=True, description="On CUDA, let cuDNN time its convolution algorithms."
    )
    sync_batchnorm: Annotated[bool, Flag("--sync-batchnorm")] = Field(
        default=False,
        description="Under torchrun, BatchNorm statistics over the global batch (SyncBatchNorm; CUDA only).",
    )
    dist_backend: Annotated[Literal["auto", "nccl", "gloo"], Flag("--dist-backend")] = Field(
        default="auto", description="Under torchrun, the collective backend; auto: nccl on CUDA, gloo on the CPU."
    )

    if TYPE_CHECKING:
        # What type checkers see of RunConfig(...): the values pydantic validates into the fields
        # above ("mlp:hidden=64" becomes a Choice, "runs/x" a Path), not only the fields' own types.
        # tests/test_types.py keeps the parameters in step with the fields.
        def __init__(
            self,
            *,
            generator: ChoiceInput = ...,
            discriminator: ChoiceInput | None = ...,
            loss: ChoiceInput = ...,
            regularizers: Sequence[ChoiceInput] = ...,
            scheduler: ChoiceInput = ...,
            dataset: ChoiceInput = ...,
            metrics: Sequence[ChoiceInput] | None = ...,
            conditional: bool = ...,
            mirror: bool = ...,
            data_mode: Literal["auto", "resident", "streamed"] = ...,
            data_workers: int | None = ...,
            steps: int = ...,
            epochs: float | None = ...,
            batch_size: int = ...,
            lr_g: float | None = ...,
            lr_d: float | None = ...,
            betas: tuple[float, float] | None = ...,
            seed: int = ...,
            device: str = ...,
            out: str | os.PathLike[str] | None = ...,
            log_every: int = ...,
            sample_every: int = ...,
            checkpoint_every: int = ...,
            keep_checkpoints: int = ...,
            loggers: ChoiceInput | Sequence[ChoiceInput] = ...,
            on_nan: Literal["stop", "skip"] = ...,
            precision: Literal["auto", "fp32", "bf16"] = ...,
            cuda_graph: bool = ...,
            channels_last: bool = ...,
            fused_adam: bool = ...,
            cudnn_benchmark: bool = ...,
            sync_batchnorm: bool = ...,
            dist_backend: Literal["auto", "nccl", "gloo"] = ...,
        ) -> None: ...

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        ok = value in {"auto", "cpu", "cuda", "mps"} or (value.startswith("cuda:") and value[5:].isdigit())
        if not ok:
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("loggers", mode="before")
    @classmethod
    def _loggers(cls, value: Any) -> Any:
        """``"a,b"`` and repeated flags alike; ``jsonl`` (always written) and repeats drop out."""
        if isinstance(value, str | dict):
            value = [value]
        if not isinstance(value, list | tuple):
            return value
        items: list[Any] = []
        for item in value:
            # "a,b" lists names; a name with options ("csv:every=2") stands alone.
            if isinstance(item, str) and ":" not in item:
                items.extend(part.strip() for part in item.split(","))
            else:
                items.append(item)
        kept: list[Any] = []
        seen: set[str] = set()
        for item in items:
            name = item.partition(":")[0].strip() if isinstance(item, str) else item.get("name") if isinstance(item, dict) else None
            if name in ("", "jsonl") or (name is not None and name in seen):
                continue
            if name is not None:
                seen.add(name)
            kept.append(item)
        return kept

    @model_validator(mode="after")
    def _one_length(self) -> RunConfig:
        if self.epochs is not None and "steps" in self.model_fields_set:
            raise ConfigError(f"--steps {self.steps} and --epochs {self.epochs:g} both set the run's length; give one")
        return self

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not all(0.0 <= b < 1.0 for b in value):
            raise ValueError("each beta must be in [0, 1)")
        return value


def field_flags() -> dict[str, Flag]:
    """Every :class:`RunConfig` field's :class:`Flag`, in field order."""
    found: dict[str, Flag] = {}
    for name, info in RunConfig.model_fields.items():
        marks = [m for m in info.metadata if isinstance(m, Flag)]
        if len(marks) != 1:
            raise TypeError(f"RunConfig.{name} needs exactly one Flag(...) in its Annotated type, has {len(marks)}")
        found[name] = marks[0]
    return found


@dataclass(frozen=True)
class Chosen:
    """One chosen component with its validated options and traits."""

    component: Component
    options: Options

    @property
    def traits(self) -> frozenset[str]:
        return self.component.traits(self.options)

    def choice(self) -> Choice:
        return Choice(name=self.component.name, options=self.options.model_dump(mode="json"))


@dataclass(frozen=True)
class Plan:
    """A resolved run: every component validated, every default filled in."""

    config: RunConfig
    generator: Chosen
    discriminator: Chosen
    loss: Chosen
    regularizers: tuple[Chosen, ...]
    scheduler: Chosen
    dataset: Chosen
    metrics: tuple[Chosen, ...]
    loggers: tuple[Chosen, ...] = ()

    @property
    def chosen(self) -> tuple[Chosen, ...]:
        return (
            self.generator,
            self.discriminator,
            self.loss,
            *self.regularizers,
            self.scheduler,
            self.dataset,
        )

    @property
    def d_steps(self) -> int:
        options = self.scheduler.options
        assert isinstance(options, ScheduleOptions) and options.d_steps is not None
        return options.d_steps


LENGTH = ("steps", "epochs")  # the fields that set a run's length: a layer of settings that gives one replaces both


def steps_for_epochs(epochs: float, samples: int, batch_size: int, d_steps: int) -> int:
    """The G steps of ``epochs`` passes over ``samples``: each G step's ``d_steps`` D steps draw a batch each.

    Exact for decimal epochs (0.1 is a tenth, not the float next to it): ``ceil(epochs * samples /
    (batch_size * d_steps))``, at least 1.
    """
    return max(1, math.ceil(Fraction(repr(float(epochs))) * samples / (batch_size * d_steps)))


def with_epochs_as_steps(plan: Plan, samples: int) -> tuple[Plan, str | None]:
    """``plan`` with ``--epochs`` turned into ``steps`` for a dataset of ``samples``, and a line saying so.

    The plan's configuration then holds the steps alone (``epochs`` None), so its
    ``config.json`` reruns, and resumes, the same number of steps.
    """
    config = plan.config
    if config.epochs is None:
        return plan, None
    steps = steps_for_epochs(config.epochs, samples, config.batch_size, plan.d_steps)
    if steps >= 2**63:
        raise ConfigError(f"--epochs {config.epochs:g} is {steps} steps, more than a step counter holds")
    d_steps = f" x {plan.d_steps} D steps" if plan.d_steps > 1 else ""
    note = (
        f"--epochs {config.epochs:g} of {samples:,} samples at batch {config.batch_size}{d_steps}: {steps:,} steps"
    )
    return dataclasses.replace(plan, config=config.model_copy(update={"steps": steps, "epochs": None})), note


def resolve(config: RunConfig, registry: Registry) -> Plan:
    """Check names, options and combinations; fill in every default. Raises ConfigError."""
    dataset = _choose(registry, "dataset", config.dataset, ResolveContext())
    loss = _choose(registry, "loss", config.loss, ResolveContext(data_traits=dataset.traits))
    recommendation = loss.component.recommends or Recommendation()
    context = ResolveContext(loss.traits, dataset.traits, recommendation, batch_size=config.batch_size)
    regularizers = tuple(_choose(registry, "regularizer", c, context) for c in config.regularizers)
    # D-input transforms apply in this order; a packing one goes last wherever it was
    # listed, so an augmentation sees single samples, never m of them stacked as channels.
    regularizers = tuple(sorted(regularizers, key=lambda r: "packing" in r.traits))
    # Networks may adapt to the regularizers (a critic without BatchNorm under r1, say).
    context = dataclasses.replace(
        context, regularizer_traits=frozenset().union(*(r.traits for r in regularizers))
    )
    generator = _choose(registry, "generator", config.generator, context)
    disc_choice = config.discriminator or Choice(name=config.generator.name)
    if config.discriminator is None and config.generator.name not in registry.names("discriminator"):
        raise ConfigError(
            f"generator '{config.generator.name}' has no discriminator of the same name; "
            f"choose one with --disc (valid: {', '.join(registry.names('discriminator'))})"
        )
    plan_parts: dict[str, Any] = {
        "generator": generator,
        "discriminator": _choose(registry, "discriminator", disc_choice, context),
        "regularizers": regularizers,
        "scheduler": _choose_schedule(registry, config.scheduler, context),
        "metrics": _choose_metrics(registry, config.metrics, dataset, context),
        "loggers": tuple(_choose(registry, "logger", c, context) for c in config.loggers),
    }
    resolved = config.model_copy(
        update={
            "lr_g": config.lr_g or recommendation.lr_g,
            "lr_d": config.lr_d or recommendation.lr_d,
            "betas": config.betas or recommendation.betas,
        }
    )
    plan = Plan(config=resolved, dataset=dataset, loss=loss, **plan_parts)
    _check_combination(plan)
    final = resolved.model_copy(
        update={
            "generator": plan.generator.choice(),
            "discriminator": plan.discriminator.choice(),
            "loss": plan.loss.choice(),
            "regularizers": [r.choice() for r in plan.regularizers],
            "scheduler": plan.scheduler.choice(),
            "dataset": plan.dataset.choice(),
            "metrics": [m.choice() for m in plan.metrics],
            "loggers": [logger.choice() for logger in plan.loggers],
        }
    )
    return Plan(**{**plan.__dict__, "config": final})


def _choose(registry: Registry, kind: Kind, choice: Choice, context: ResolveContext) -> Chosen:
    component = registry.get(kind, choice.name)
    return Chosen(component, component.validate(choice.options, context))


def _choose_schedule(registry: Registry, choice: Choice, context: ResolveContext) -> Chosen:
    chosen = _choose(registry, "scheduler", choice, context)
    if not isinstance(chosen.options, ScheduleOptions):
        raise ConfigError(f"{chosen.component.label}: options must subclass ScheduleOptions")
    if chosen.options.d_steps is None:
        options = chosen.options.model_copy(update={"d_steps": context.recommendation.d_steps})
        chosen = Chosen(chosen.component, options)
    return chosen


def _choose_metrics(
    registry: Registry, choices: list[Choice] | None, dataset: Chosen, context: ResolveContext
) -> tuple[Chosen, ...]:
    if choices is not None:
        return tuple(_choose(registry, "metric", c, context) for c in choices)
    # A metric with the (static) trait "opt-in" runs only when named: it is slow or needs files.
    supported = [
        m
        for m in registry.all("metric")
        if m.requires <= dataset.traits and (callable(m.trait_spec) or "opt-in" not in m.trait_spec)
    ]
    return tuple(Chosen(m, m.validate({}, context)) for m in supported)


def _check_combination(plan: Plan) -> None:
    """Every chosen component's requirements and declared conflicts, one line each."""
    for chosen in (*plan.chosen, *plan.metrics, *plan.loggers):
        _check_packages(chosen.component)
    if plan.config.conditional:
        _check_conditional(plan)
    if plan.config.mirror and "image" not in plan.dataset.traits:
        raise ConfigError(
            f"--mirror flips images left-right; dataset '{plan.dataset.component.name}' is "
            f"{_a(plan.dataset.traits)}, not image"
        )
    if plan.config.batch_size < 2:
        for chosen in (plan.generator, plan.discriminator):
            if chosen.traits & {"batchnorm-in-g", "batchnorm-in-d"}:
                raise ConfigError(
                    f"{chosen.component.label} uses BatchNorm, which needs --batch-size 2 or more"
                )
    names = [r.component.name for r in plan.regularizers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"regularizer '{twice[0]}' is chosen twice; give each regularizer once")
    data_traits = plan.dataset.traits
    for chosen in (*plan.chosen, *plan.metrics):
        missing = chosen.component.requires - data_traits
        if missing:
            raise ConfigError(
                f"{chosen.component.label} needs {_a(missing)} dataset, but dataset "
                f"'{plan.dataset.component.name}' is {_a(data_traits)}"
            )
    for chosen in plan.chosen:
        if plan.config.conditional and "conditional" in chosen.component.conflicts:
            reason = chosen.component.conflicts["conditional"]
            raise ConfigError(f"{chosen.component.label} cannot be used with --conditional: {reason}")
        for other in plan.chosen:
            if other is chosen:
                continue
            for trait, reason in chosen.component.conflicts.items():
                if trait in other.traits:
                    raise ConfigError(
                        f"{chosen.component.label} cannot be combined with "
                        f"{other.component.label}: {reason}"
                    )


def _check_packages(component: Component) -> None:
    """The Python packages a component ``needs`` are installed (found, not imported: cheap)."""
    import importlib.util

    for package in component.needs:
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module set to None
            found = False
        if not found:
            raise ConfigError(
                f"{component.label} needs the '{package}' package, which is not installed: pip install {package}"
            )


def _check_conditional(plan: Plan) -> None:
    dataset = plan.dataset.component
    if "labelled" not in plan.dataset.traits:
        raise ConfigError(f"--conditional needs a labelled dataset; dataset '{dataset.name}' has no labels")
    for chosen in (plan.generator, plan.discriminator):
        if "label-conditioning" not in chosen.traits:
            raise ConfigError(
                f"--conditional needs networks that take labels; {chosen.component.label} does not"
            )


def _a(traits: frozenset[str]) -> str:
    return "/".join(sorted(traits)) or "untyped"
