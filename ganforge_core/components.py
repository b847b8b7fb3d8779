"""What a component is: options models, build context and the protocols each kind implements.

Everything here is importable from ``ganforge_core``. The module does not import
torch at run time, so resolving a configuration stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ganforge_core.datasource import SampleSource, StorageDtype

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ganforge_core.config import RunConfig

Kind = Literal["generator", "discriminator", "loss", "regularizer", "scheduler", "dataset", "metric", "logger"]
KINDS: tuple[Kind, ...] = get_args(Kind)  # ganforge_core.kinds.TABLE describes each, in this order


INT64 = (-(2**63), 2**63)  # an int option must fit in a signed 64-bit integer (torch's and NumPy's)


def numbers_only(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A ``before`` validator: ``true`` is no number (pydantic would read it as 1)."""
    if isinstance(value, bool) and info.field_name is not None:
        annotation = cls.model_fields[info.field_name].annotation
        if bool not in (annotation, *get_args(annotation)) and {int, float} & {annotation, *get_args(annotation)}:
            raise ValueError("must be a number, not true or false")
    return value


def fits_64_bits(value: Any) -> Any:
    """An ``after`` validator: an int past 64 bits is refused here, not by an OverflowError later."""
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value < INT64[1]:
        raise ValueError("must fit in a signed 64-bit integer (below 2**63)")
    return value


class Options(BaseModel):
    """Base class of every component's options: typos are errors, values are frozen.

    Give every field a ``Field(description=...)``: ``ganforge plugins`` and the docs
    show it. Fields may read the validation context (a :class:`ResolveContext`
    under the key ``"resolve"``) to pick defaults that depend on the rest of the run.

    Every subclass refuses what no option means: an infinite or NaN float, an int
    past 64 bits, ``true``/``false`` for a number. Give size options an upper bound
    (``le=``) so a typo cannot ask for more memory than a machine has.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    _numbers_only = field_validator("*", mode="before")(classmethod(numbers_only))
    _fits_64_bits = field_validator("*", mode="after")(fits_64_bits)


def run_progress(step: int, total_steps: int) -> float:
    """How far G step ``step`` (0-based) is through a run of ``total_steps``: 0 at the first step, 1 at the last.

    Schedules and annealing read it, so an end value documented as "reached at the
    last step" is reached there (a one-step run is at its end).
    """
    if total_steps <= 1:
        return 1.0
    return min(max(step / (total_steps - 1), 0.0), 1.0)


class NoOptions(Options):
    """For components without options."""


class Annealing(Options):
    """Options mixin for a regularizer whose strength can be annealed over the run.

    ``strength(progress)`` is the factor to multiply the strength by: 1 at the
    start, ``anneal_to`` at the end. A regularizer that anneals reads the step,
    so it must not declare ``graph-safe`` then (see :func:`graph_safe_unless_annealed`).
    """

    anneal: Literal["none", "linear", "cosine"] = Field(
        "none", description="anneal the strength over the run: none, linear or cosine"
    )
    anneal_to: float = Field(
        0.0, ge=0.0, description="with anneal: the strength at the end, as a fraction of the start"
    )

    def strength(self, progress: float) -> float:
        if self.anneal == "none":
            return 1.0
        return 1.0 + (self.anneal_to - 1.0) * anneal_shape(self.anneal, progress)


def anneal_shape(curve: Literal["linear", "cosine"], progress: float) -> float:
    """How far an annealed value has gone from its start to its end at run progress ``progress``: 0 at the
    start, 1 at the end, along a straight line or half a cosine period (R3GAN's ``cosine_decay``)."""
    done = min(max(progress, 0.0), 1.0)
    return done if curve == "linear" else (1 - math.cos(math.pi * done)) / 2


def graph_safe_unless_annealed(options: Annealing) -> set[str]:
    """``{"graph-safe"}`` when the strength is constant (a CUDA graph may capture it)."""
    return {"graph-safe"} if options.anneal == "none" else set()


class ScheduleOptions(Options):
    """Options every schedule has. ``d_steps=None`` takes the loss's recommendation."""

    d_steps: int | None = Field(
        None, ge=1, le=100, description="D steps per G step; default: the loss's recommendation (else 1)"
    )


@dataclass(frozen=True)
class Recommendation:
    """Optimizer settings a loss was published with; the user's flags override them."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    d_steps: int = 1


@dataclass(frozen=True)
class ResolveContext:
    """What option validators may look at: the loss's, dataset's and (for networks) the
    regularizers' traits, and the batch size."""

    loss_traits: frozenset[str] = frozenset()
    data_traits: frozenset[str] = frozenset()
    recommendation: Recommendation = Recommendation()
    batch_size: int = 64
    regularizer_traits: frozenset[str] = frozenset()


@dataclass
class BuildContext:
    """Passed to every factory: what the component needs to know about the run.

    ``d_input_shape`` is what D sees after regularizers reshape its inputs (packing);
    build discriminators for it. ``conditional``: G is called as ``G(z, labels)``
    and D as ``D(x, labels=labels)``, with integer labels in ``[0, num_classes)``.
    """

    data_shape: tuple[int, ...]
    num_classes: int
    total_steps: int
    batch_size: int
    device: torch.device
    seed: int
    loss_traits: frozenset[str] = frozenset()
    data_info: Mapping[str, Any] = field(default_factory=dict)
    conditional: bool = False
    d_input_shape: tuple[int, ...] = ()


@dataclass
class Dataset:
    """A dataset: its samples held as one tensor, or read by index from a :class:`SampleSource`.

    ``samples`` is ``[N, *shape]``: uint8 images ``[N, C, H, W]`` in ``[0, 255]``, or
    float32 in the model's scale (images in ``[-1, 1]``, 2-D points as they are).
    ``source`` reads samples of any size by index instead (give one of the two); its
    labels are the dataset's. The core keeps the stored form until the training device,
    where uint8 becomes ``x / 127.5 - 1``; read samples through :meth:`take` and
    :meth:`evenly_spaced`, which always give float32 in the model's scale on the CPU.
    """

    samples: Tensor | None = None
    labels: Tensor | None = None
    num_classes: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    source: SampleSource | None = None

    def __post_init__(self) -> None:
        if (self.samples is None) == (self.source is None):
            raise TypeError("ganforge_core.Dataset takes samples=TENSOR or source=SAMPLE_SOURCE, exactly one")
        if self.source is not None and self.labels is None:
            self.labels = self.source.labels

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's shape, ``(C, H, W)`` for images."""
        if self.source is not None:
            return tuple(self.source.shape)
        assert self.samples is not None
        return tuple(self.samples.shape[1:])

    def __len__(self) -> int:
        if self.source is not None:
            return len(self.source)
        assert self.samples is not None
        return int(self.samples.shape[0])

    @property
    def storage_dtype(self) -> StorageDtype:
        """``"uint8"`` for pixels in ``[0, 255]``, ``"float32"`` for data in the model's scale."""
        if self.source is not None:
            return self.source.dtype
        assert self.samples is not None
        return "uint8" if str(self.samples.dtype) == "torch.uint8" else "float32"

    @property
    def nbytes(self) -> int:
        """The stored samples' size in bytes (what keeping them resident costs)."""
        return len(self) * math.prod(self.shape) * (1 if self.storage_dtype == "uint8" else 4)

    def as_source(self) -> SampleSource:
        """The samples as a :class:`SampleSource` (a held tensor becomes a ``TensorSource``)."""
        if self.source is not None:
            return self.source
        from ganforge_core.datasource import TensorSource

        assert self.samples is not None
        return TensorSource(self.samples, self.labels)

    def read(self, indices: Sequence[int] | Tensor) -> Tensor:
        """The samples at ``indices`` in their stored dtype, on the CPU."""
        if self.source is not None:
            return self.source.read([int(i) for i in indices])
        import torch

        assert self.samples is not None
        return self.samples.index_select(0, torch.as_tensor(indices, dtype=torch.long)).cpu()

    def take(self, indices: Sequence[int] | Tensor) -> Tensor:
        """The samples at ``indices`` as float32 in the model's scale, on the CPU."""
        from ganforge_core.datasource import to_model_scale

        return to_model_scale(self.read(indices))

    def evenly_spaced(self, n: int) -> Tensor:
        """At most ``n`` samples spread evenly over the dataset (every ``len // n``-th), with no RNG."""
        every = max(1, len(self) // max(1, n))
        return self.take(range(0, len(self), every)[:n])


@dataclass
class Targets:
    """Targets for target-based losses (BCE family); label smoothing changes ``real``."""

    real: float = 1.0
    fake: float = 0.0


@dataclass
class DContext:
    """What a loss or penalty sees in a D phase, D main or D reg (after regularizers transformed inputs).

    ``discriminator`` maps a batch to logits, with the batch's labels bound in
    conditional runs (real and fake samples of a D phase share their labels).
    ``fake`` carries no graph to G. ``step`` is the G step the D step belongs to;
    ``progress`` is :func:`run_progress` of it (0 at the first step, 1 at the last).
    """

    discriminator: Callable[[Tensor], Tensor]
    real: Tensor
    fake: Tensor
    targets: Targets
    step: int
    progress: float


@dataclass
class GContext:
    """What a loss or a G penalty sees in a G phase, G main or G reg (D is frozen in both).

    ``real_logits()`` runs D on a real batch on demand. ``generator`` is G as the
    phase runs it (``generator(latents)``, or ``generator(latents, labels)`` in
    conditional runs), ``latents`` the phase's latents and ``fake`` G's output for
    them, with its graph to G's parameters (a G penalty such as path-length
    regularization differentiates through it). ``labels`` are the batch's labels in
    conditional runs.
    """

    real_logits: Callable[[], Tensor]
    targets: Targets
    step: int
    progress: float
    generator: Callable[..., Tensor] | None = None
    latents: Tensor | None = None
    fake: Tensor | None = None
    labels: Tensor | None = None


class Loss:
    """An adversarial loss: one method per phase. Logits have shape ``[N]``."""

    decision_threshold: float | None = 0.0
    """The logit above which D calls a sample real (0 for a logit: D(x) > 1/2). D's accuracy
    is logged from it: ``d/accuracy/real``, the share of real logits above it, and
    ``d/accuracy/fake``, the share of fake logits below it. ``None``: D's output makes no
    call on its own (a Wasserstein critic, a relativistic D), and no accuracy is logged."""

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor, ctx: DContext) -> Tensor:
        """The scalar (0-dim) tensor D minimises, from D's logits of the real and the fake batch."""
        raise NotImplementedError

    def g_loss(self, fake_logits: Tensor, ctx: GContext) -> Tensor:
        """The scalar (0-dim) tensor G minimises, from D's logits of G's batch."""
        raise NotImplementedError

    def extra_stats(self) -> dict[str, Tensor]:
        """Named detached tensors from the last D phase (such as a gradient penalty)."""
        return {}

    def after_d_step(self, discriminator: nn.Module) -> None:
        """Act on D after its optimizer stepped (WGAN's weight clipping, say)."""


class Regularizer:
    """A stabiliser acting at named points of a step. Every method is optional.

    Penalties run in phases (stylegan2-ada's D main / D reg / G main / G reg):
    with ``d_penalty_every = 1`` (the default) :meth:`d_penalty` is added to D's
    loss in every D main phase; with ``k > 1`` it runs lazily as a phase of its own
    (``"D reg"``: its own forward passes, backward and optimizer step) on the D
    steps whose counter ``step * d_steps + i`` k divides, multiplied by ``k``, and
    D's Adam is built with StyleGAN2's adjustment (``lr * c``, ``betas ** c``,
    ``c = k / (k + 1)``; ``1 / (1 + sum(1/k))`` over several distinct intervals).
    ``g_penalty_every`` and :meth:`g_penalty` do the same for G (``"G reg"``, on
    the G steps k divides). Set either in ``__init__`` from options (R1's
    ``every``); it must be an int of at least 1. Terms are logged as
    ``penalty/NAME`` (D) and ``penalty/g/NAME`` (G); anything else a regularizer
    reports comes from :meth:`extra_stats`, logged as ``NAME/key``.
    """

    d_penalty_every: int = 1
    g_penalty_every: int = 1

    def wrap_generator(self, generator: nn.Module) -> nn.Module:
        """G as the run should train it (spectral norm on G's layers, say); once, before training."""
        return generator

    def wrap_discriminator(self, discriminator: nn.Module) -> nn.Module:
        """D as the run should train it; once, before training."""
        return discriminator

    def transform_d_input(self, x: Tensor, progress: float) -> Tensor:
        """Applied to every batch D sees, real and fake, in both phases."""
        return x

    def d_input_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample shape ``transform_d_input`` produces from ``shape`` (packing changes it)."""
        return shape

    def adjust_targets(self, targets: Targets) -> Targets:
        """The targets of target-based losses (label smoothing lowers ``real``); once, before training."""
        return targets

    def d_penalty(self, ctx: DContext) -> Tensor | None:
        """A term added to D's loss in the D phase (or its own phase, see ``d_penalty_every``)."""
        return None

    def g_penalty(self, ctx: GContext) -> Tensor | None:
        """A term added to G's loss in the G phase (or its own phase, see ``g_penalty_every``)."""
        return None

    def after_d_step(self, discriminator: nn.Module) -> None:
        """Act on D after its optimizer stepped."""

    def observe_d_logits(self, real_logits: Tensor, fake_logits: Tensor) -> None:
        """D main's logits ``[N]`` of the real and the fake batch as D saw them (after every
        ``transform_d_input``), detached, once per D main update, after D's optimizer stepped.

        Not called in D reg or the G phases, nor for an update ``--on-nan skip`` dropped.
        ADA's p follows ``sign(real_logits)`` from here, without a forward pass of its own.
        """

    def extra_stats(self) -> dict[str, Tensor]:
        """Named detached scalar (0-dim) tensors, read after each D main update (after
        :meth:`observe_d_logits`) and logged as ``NAME/key`` for the regularizer ``NAME``
        (``ada/p``), averaged over the logging window like every statistic."""
        return {}

    def after_g_step(self, generator: nn.Module, step: int) -> None:
        """Observe G after its optimizer stepped (an EMA of G, say)."""

    def sampling_generator(self) -> nn.Module | None:
        """A generator to sample and evaluate with instead of G (an EMA copy), or None."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain data to checkpoint (an EMA copy's weights, say)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


class Schedule:
    """D steps per G step, the learning-rate multiplier over the run, and (optionally) Adam's beta2."""

    def __init__(self, d_steps: int) -> None:
        self.d_steps = d_steps

    def lr_multiplier(self, step: int, total_steps: int) -> float:
        """The factor both learning rates are multiplied by before G step ``step`` (0-based)."""
        return 1.0

    def adam_beta2(self, step: int, total_steps: int, final: float) -> float:
        """Adam's beta2 for both networks before G step ``step``; ``final`` is the run's (``--betas``).

        The core asks only a schedule of the trait ``beta2-schedule`` (others keep the
        run's beta2 throughout); a network with lazy penalties gets ``beta2 ** c`` as
        with ``--betas`` (:func:`~ganforge_core.engine.lazy_ratio`).
        """
        return final


class Growing(Protocol):
    """A network whose architecture follows the run's progress (progressive growing): trait ``growing``.

    The core calls :meth:`grow` on it, and nothing else tells it the step: the
    engine before every training step (on G and D, with the step about to run),
    and a :class:`~ganforge_core.trained.Trained` before it samples (on the
    sampling generator, an EMA copy included, with the step it holds). Networks
    without the trait are never called and cost nothing. Build the network in
    its final form (the last step's), so that code which never calls ``grow``
    (the contract checks of other kinds, ``HubGenerator``) sees a whole network.
    Its input and output shapes never change: a growing G still returns samples
    of the data's shape and a growing D takes them.
    """

    def grow(self, step: int, total_steps: int) -> Hashable:
        """Take the form of G step ``step`` of ``total_steps`` (0-based), as a pure function of the two
        numbers (a resumed run then continues exactly); return a key that changes exactly when the
        operations the forward pass runs change. A CUDA graph the engine captured under one key is
        released and captured again under the next, so what varies within a key (a fade-in weight)
        must be a tensor the forward pass reads, updated in place here."""
        ...


class Metric:
    """An evaluation of a generator against the real data."""

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        """:param generate: ``generate(n)`` returns ``n`` samples on the CPU.

        :return: named values; names are prefixed with the metric's name by the core.
        """
        raise NotImplementedError


class Renderer(Protocol):
    """Draws samples of a dataset into a picture; a dataset registers one with ``render=``.

    ``samples`` are on the CPU, shape ``[N, *data_shape]``, in the dataset's own
    scale; ``info`` is the dataset's ``info``; ``columns`` asks for that many per
    row where the picture is a grid (conditional runs show one class a column;
    ``sample --interpolate K`` passes its paths one after another with ``columns=K``).
    """

    def __call__(
        self, samples: Tensor, path: Path, *, info: Mapping[str, Any], columns: int | None = None
    ) -> None: ...


@dataclass
class RunContext:
    """What lifecycle hooks and loggers see of a run."""

    config: RunConfig
    run_dir: Path
    device: torch.device
    start_step: int
    generator: nn.Module
    discriminator: nn.Module
    dataset: Dataset
    warn: Callable[[str], None] = print
    extra: dict[str, Any] = field(default_factory=dict)


class Logger:
    """Where a run's records go besides ``metrics.jsonl`` (``--logger NAME``). Every method is optional.

    The factory is called as ``factory(options, run)`` with the :class:`RunContext`
    once the networks are built (also on resume, with ``run.start_step`` > 0).
    Only the main process of a distributed run logs.
    """

    def log(self, step: int, stats: Mapping[str, float]) -> None:
        """The statistics averaged over the last ``log_every`` steps."""

    def samples(self, step: int, path: Path) -> None:
        """A sample picture the run wrote (``samples-XXXXXXXX.png``, and ``samples.png`` at the end)."""

    def checkpoint(self, step: int, path: Path) -> None:
        """A checkpoint written atomically."""

    def end(self, step: int, results: Mapping[str, float]) -> None:
        """Training stopped (normally or by a signal); ``results`` are the final metrics (maybe none)."""

    def close(self) -> None:
        """Release files and connections; called once, after :meth:`end`, even when training failed."""


TraitSpec = Iterable[str] | Callable[[Any], Iterable[str]]
