"""The training step: phases in the manner of stylegan2-ada. Nothing else lives here.

A step is a list of phases. For each of its ``d_steps`` D steps: **D main** (the
loss plus the D penalties whose interval is 1) and, on the D steps whose counter
a lazy interval k divides, **D reg** (the penalties of interval k, each
multiplied by k, as a D update of its own). Then **G main** (the loss plus the G
penalties of interval 1) and, when k divides the step number, **G reg**. The D
step counter is ``step * d_steps + i``, derived from the step number, so a
resumed run runs its lazy phases on the very steps a run never stopped would.
Each distinct interval is a phase of its own; :func:`lazy_ratio` is the Adam
adjustment that goes with them (StyleGAN2's ``training_loop.py``).

A discriminator of the trait ``per-sample`` (it scores each sample on its own and
keeps no state across calls) scores D main's real and fake batches in one call,
split into the two logits the loss gets; any other is called once per batch.

Isolation between the phases is structural:

* D main and D reg: fakes come from G under ``torch.no_grad()``, so no graph
  reaches G; only D's optimizer steps.
* G main and G reg: D's parameters have ``requires_grad=False`` while G's loss
  flows through D; only G's optimizer steps.

Statistics stay on the device as detached tensors; the caller reads them every
few steps, so the hot loop never waits for the GPU. Every step run in Python
checks what the components return (shapes and dtypes, host metadata only; see
:mod:`ganforge_core.traincheck`).

Fast path (CUDA): forward passes and losses run under bf16 autocast, and the
whole step (all its phases, optimizer steps included) is captured in a CUDA
graph and replayed, which removes the per-kernel launch cost that bounds
small-batch GAN training. Steps differ only in which lazy phases they run (their
*kind*, :meth:`Engine.step_kind`); each kind gets a graph of its own once
``GRAPH_WARMUP`` eager steps of that kind have run, so a run with lazy R1 holds
two graphs, one with the D reg phase and one without. At most ``MAX_GRAPHS``
kinds are captured (each graph holds its own memory); steps of any further
kind run eagerly. Only steps whose loss and regularizers declare the trait
``graph-safe`` (their work depends on tensors alone, not on the step number or
host values) are captured; anything else runs eagerly.

Growing networks (the trait ``growing``, :class:`~ganforge_core.components.Growing`):
before each step the engine calls ``grow(step, total_steps)`` on them, a pure
function of the step, so a resumed run grows exactly as a run never stopped. When
the key a network returns changes (a new stage of progressive growing), the
graphs captured for its old form are released and each kind of step warms up and
is captured again; a fade-in weight that changes within a key is a tensor the
captured graph reads.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import torch
from torch import Tensor, nn

from ganforge_core import traincheck
from ganforge_core.batches import Batch, Batches
from ganforge_core.components import DContext, GContext, Loss, Regularizer, Schedule, Targets, run_progress
from ganforge_core.distributed import SOLO, World
from ganforge_core.traincheck import Owners

GRAPH_WARMUP = 3
MAX_GRAPHS = 4
PHASES = ("D", "G")

# Which lazy phases a step runs: the D reg intervals of each of its D steps, and the G reg intervals.
StepKind = tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]
Penalties = list[tuple[str, Regularizer]]


def penalty_intervals(
    regularizers: Mapping[str, Regularizer], network: Literal["d", "g"], owners: Owners | None = None
) -> dict[str, int]:
    """Each regularizer's ``d_penalty_every`` (or ``g_penalty_every``), checked to be an int >= 1."""
    who, attribute = owners or Owners(), f"{network}_penalty_every"
    return {
        name: traincheck.interval(getattr(reg, attribute), who(f"regularizer:{name}"), attribute)
        for name, reg in regularizers.items()
    }


def lazy_ratio(intervals: Iterable[int]) -> float:
    """StyleGAN2's Adam adjustment ``c`` for a network whose lazy penalties have these intervals.

    Build the network's Adam with ``lr * c`` and ``betas ** c``. Every distinct
    interval k > 1 adds a phase, so one update in k main updates; over a stretch
    of training the network then takes ``1 + sum(1/k)`` updates per main one, and
    ``c = 1 / (1 + sum(1/k))``: ``k / (k + 1)`` for one interval (StyleGAN2's
    ``mb_ratio``), 1 when every interval is 1.
    """
    return float(1 / (1 + sum((Fraction(1, k) for k in set(intervals) if k > 1), Fraction(0))))


def _by_interval(regularizers: Mapping[str, Regularizer], intervals: Mapping[str, int]) -> dict[int, Penalties]:
    grouped: dict[int, Penalties] = {}
    for name, reg in regularizers.items():
        grouped.setdefault(intervals[name], []).append((name, reg))
    return dict(sorted(grouped.items()))


def _accumulate(into: dict[str, Tensor], stats: Mapping[str, Tensor]) -> None:
    for key, value in stats.items():
        into[key] = value if key not in into else into[key] + value


def _zero_through(network: nn.Module) -> Tensor:
    """0, with a graph to every trainable parameter of ``network``.

    Added to a reg phase's loss, it gives every parameter a gradient (exactly 0
    where the penalty does not reach, as R1 never reaches D's last bias), as
    stylegan2-ada's ``logits * 0`` term does: DDP then finds every gradient it
    waits for, and Adam steps every parameter together.
    """
    trainable = [p.sum() for p in network.parameters() if p.requires_grad]
    return torch.stack(trainable).sum() * 0 if trainable else torch.zeros(())


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    reals: list[Batch]  # the graph's inputs: each replay draws the step's batches into them
    stats: dict[str, Tensor]  # its outputs, rewritten by each replay


@dataclass
class Engine:
    generator: nn.Module
    discriminator: nn.Module
    loss: Loss
    regularizers: Mapping[str, Regularizer]
    schedule: Schedule
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: Batches
    total_steps: int
    autocast_dtype: torch.dtype | None = None
    cuda_graph: bool = False
    skip_nonfinite: bool = False
    # Distributed training (see ganforge_core.distributed): the DDP wrappers that run
    # the phases whose gradients are averaged (D in the D phases, G in the G phases), and
    # the latent stream shared by all ranks (each draws the global batch, keeps its slice).
    world: World = SOLO
    train_generator: nn.Module | None = None
    train_discriminator: nn.Module | None = None
    latent_source: torch.Generator | None = None
    # Who provides each component, for train-time contract errors (run.py fills it in).
    owners: Owners = field(default_factory=Owners)
    # The networks of components with the trait ``growing`` (run.py fills it in), grown before each step.
    growing: Sequence[nn.Module] = ()
    # The run's Adam beta2 (--betas) when the schedule has the trait ``beta2-schedule``, which then sets
    # both optimizers' beta2 before each step; None: beta2 stays as the optimizers were built.
    scheduled_beta2: float | None = None
    # D has the trait ``per-sample`` (run.py fills it in): D main scores its real and fake batches in one call.
    per_sample_critic: bool = False

    def __post_init__(self) -> None:
        targets = Targets()
        for reg in self.regularizers.values():
            targets = reg.adjust_targets(targets)
        self.targets = targets
        # getattr: nn.Module types its attributes as Tensor | Module; a generator's z_dim is an int
        self.z_dim = int(getattr(self.generator, "z_dim"))
        self.device = self.batches.device
        d_every = _by_interval(self.regularizers, penalty_intervals(self.regularizers, "d", self.owners))
        g_every = _by_interval(self.regularizers, penalty_intervals(self.regularizers, "g", self.owners))
        self._d_main, self._g_main = d_every.pop(1, []), g_every.pop(1, [])
        self._d_lazy, self._g_lazy = d_every, g_every  # interval k > 1 -> its penalties
        self.d_intervals, self.g_intervals = tuple(d_every), tuple(g_every)
        # Only regularizers that override observe_d_logits or extra_stats are called after D main.
        self._observers = {
            name: (reg, self.owners(f"regularizer:{name}"))
            for name, reg in self.regularizers.items()
            if any(getattr(type(reg), m, None) is not getattr(Regularizer, m) for m in ("observe_d_logits", "extra_stats"))
        }
        self._base_lr = {
            id(opt): [float(group["lr"]) for group in opt.param_groups] for opt in (self.opt_g, self.opt_d)
        }
        # Device-side watch for non-finite losses: (G steps run, step and phase of the
        # first failure). Updated inside the step, read by the caller when it syncs anyway.
        self._steps_run = torch.zeros((), dtype=torch.int64, device=self.device)
        self._first_failure = torch.full((2,), -1, dtype=torch.int64, device=self.device)
        # Running sums of the step statistics, on the device and inside the graph.
        self._sums: dict[str, Tensor] = {}
        self._summed_steps = 0
        # The statistics some step since the last read produced (a lazy phase's only on its steps).
        self._fresh: set[str] = set()
        self._lr_factor: float | None = None
        self._beta2: float | None = None
        # Each optimizer's exponent for beta2: lazy penalties' StyleGAN2 adjustment, as run.py built it.
        self._beta2_power = {id(self.opt_g): lazy_ratio(self.g_intervals), id(self.opt_d): lazy_ratio(self.d_intervals)}
        # Updates dropped because their loss was not finite (--on-nan skip), per network.
        self.skipped = {"D": 0, "G": 0}
        self._eager_runs: dict[StepKind, int] = {}
        self._graphs: dict[StepKind, _Captured] = {}
        self._side_stream: torch.cuda.Stream | None = None
        self._form: tuple[Hashable, ...] | None = None  # the growing networks' keys (Growing.grow)
        self._d_parameters: list[nn.Parameter] | None = None  # D's, listed once (and again when D grows)

    # -- one step -----------------------------------------------------------

    def step_kind(self, step: int) -> StepKind:
        """Which lazy phases step ``step`` runs (D step ``i`` of the step is D step ``step * d_steps + i``)."""
        d_steps = self.schedule.d_steps
        d_kind = tuple(tuple(k for k in self._d_lazy if (step * d_steps + i) % k == 0) for i in range(d_steps))
        return d_kind, tuple(k for k in self._g_lazy if step % k == 0)

    def step(self, step: int) -> dict[str, Tensor]:
        """Run one step's phases (see the module's docstring); ``step`` counts completed G steps.

        The returned tensors are valid until the next call (a replayed graph
        writes its outputs in place); :meth:`read_stats` gives their running means.
        """
        self._set_learning_rates(step)
        self.grow(step)
        self._summed_steps += 1
        kind = self.step_kind(step)
        captured = self._graphs.get(kind)
        if captured is not None:
            for static in captured.reals:
                self.batches.draw(out=static)  # straight into the graph's inputs
            captured.graph.replay()
            self._fresh.update(captured.stats)
            return captured.stats
        reals = [self.batches.draw() for _ in range(self.schedule.d_steps)]
        warm = self._eager_runs.get(kind, 0) >= GRAPH_WARMUP
        if self.cuda_graph and warm and len(self._graphs) < MAX_GRAPHS:
            return self._capture(reals, step, kind)
        self._eager_runs[kind] = self._eager_runs.get(kind, 0) + 1
        if self.cuda_graph:  # warm-up on a side stream, as CUDA graph capture requires
            # One stream for all warm-up steps: cuBLAS keeps a workspace per stream.
            side = self._side_stream = self._side_stream or torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                stats = self._run_phases(reals, step, kind)
            torch.cuda.current_stream().wait_stream(side)
            return stats
        return self._run_phases(reals, step, kind)

    def grow(self, step: int) -> bool:
        """Grow the growing networks to step ``step``; whether their form changed since the last step.

        A change releases the CUDA graphs captured for the old form and restarts their
        warm-up, so each kind of step is captured again for the new one.
        """
        if not self.growing:
            return False
        # getattr: nn.Module types its attributes as Tensor | Module; grow is a method (traincheck.grows)
        form = tuple(getattr(network, "grow")(step, self.total_steps) for network in self.growing)
        if form == self._form:
            return False
        changed = self._form is not None
        self._form = form
        self._d_parameters = None
        self._graphs.clear()
        self._eager_runs.clear()
        return changed

    def _run_phases(self, reals: Sequence[Batch], step: int, kind: StepKind) -> dict[str, Tensor]:
        d_kind, g_kind = kind
        stats: dict[str, Tensor] = {}
        lazy_d: dict[str, Tensor] = {}
        lazy_g: dict[str, Tensor] = {}
        skipped_before = dict(self.skipped)
        for (real, labels), intervals in zip(reals, d_kind, strict=True):
            stats = self.d_phase(real, step, labels)
            for interval in intervals:
                _accumulate(lazy_d, self.d_reg_phase(real, step, labels, interval=interval))
        last_real, last_labels = reals[-1]
        stats.update(self.g_phase(last_real, step, last_labels))
        for interval in g_kind:
            _accumulate(lazy_g, self.g_reg_phase(last_real, step, last_labels, interval=interval))
        if self.skipped["G"] == skipped_before["G"]:  # a dropped G main update is no G step
            for reg in self.regularizers.values():
                reg.after_g_step(self.generator, step + 1)
        # A lazy D penalty's statistic: its term averaged over the step's D steps (0 where it did not run).
        stats.update({key: value / len(reals) if len(reals) > 1 else value for key, value in lazy_d.items()})
        stats.update(lazy_g)
        self._steps_run.add_(1)
        if self.skipped != skipped_before:  # eager only: skipping needs the host
            self._summed_steps -= 1  # a step with a dropped update stays out of the averages
            return stats
        for key, value in stats.items():
            total = self._sums.get(key)
            if total is None:  # an eager step: every kind of step runs eagerly before its capture
                self._sums[key] = value.detach().float().clone()
            else:
                total.add_(value.detach())
        self._fresh.update(stats)
        return stats

    def read_stats(self) -> dict[str, float]:
        """Mean of each statistic over the steps since the last call (one host sync).

        A statistic only some steps produce (a lazy penalty's) counts 0 on the others,
        and is left out when no step since the last call produced it.
        """
        keys = [key for key in self._sums if key in self._fresh]
        self._fresh.clear()
        if not keys or not self._summed_steps:
            return {}
        stacked = torch.stack([self._sums[k] for k in keys]).div(self._summed_steps)
        means = self.world.mean_(stacked).tolist()  # over the ranks: the global batch's means
        for total in self._sums.values():
            total.zero_()
        self._summed_steps = 0
        return dict(zip(keys, means, strict=True))

    def _watch(self, loss: Tensor, phase: int) -> None:
        if self.skip_nonfinite:
            return
        if self.device.type == "cpu":
            # Reading a CPU tensor waits for nothing: one read instead of the seven tensor ops below,
            # which keep a CUDA step free of host syncs (and capturable in a graph).
            if not math.isfinite(loss.item()) and int(self._first_failure[0]) < 0:
                self._first_failure.copy_(torch.stack([self._steps_run, torch.full_like(self._steps_run, phase)]))
            return
        first_seen = ~torch.isfinite(loss) & (self._first_failure[0] < 0)
        here = torch.stack([self._steps_run, torch.full_like(self._steps_run, phase)])
        self._first_failure.copy_(torch.where(first_seen, here, self._first_failure))

    def failure(self, first_step: int) -> tuple[int, str] | None:
        """(step, phase) of the first non-finite loss since ``first_step``, else None. Syncs."""
        step, phase = self._first_failure.tolist()
        if self.world.distributed:  # the earliest failure on any rank, agreed by all
            never = 2**62
            code = self.world.minimum([step * 2 + phase if step >= 0 else never], self.device)[0]
            step, phase = (-1, 0) if code == never else divmod(code, 2)
        return None if step < 0 else (first_step + step + 1, PHASES[phase])

    def _capture(self, reals: list[Batch], step: int, kind: StepKind) -> dict[str, Tensor]:
        static = [Batch(real.clone(), None if labels is None else labels.clone()) for real, labels in reals]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # one private memory pool per graph: kinds replay in any order
            stats = self._run_phases(static, step, kind)
        self._graphs[kind] = _Captured(graph, static, stats)
        graph.replay()  # capture records without running: this is the step itself
        return stats

    # -- the phases -----------------------------------------------------------

    def d_phase(self, real: Tensor, step: int, labels: Tensor | None = None) -> dict[str, Tensor]:
        """D main: one D update on the loss plus the D penalties of interval 1.

        Conditional runs pass the real batch's labels; fakes share them.
        """
        self._d_trainable(True)
        critic = self._critic(labels, self.train_discriminator)
        with self._autocast():
            ctx = self._d_context(real, step, labels, critic)
            real_logits, fake_logits = self._scores(ctx, labels)
            total = self.loss.d_loss(real_logits, fake_logits, ctx)
            traincheck.scalar(total, self.owners("loss"), "d_loss")
            stats = {f"loss/{k}": v for k, v in self.loss.extra_stats().items()}
            penalty, penalties = self._penalties(self._d_main, "d_penalty", ctx, 1)
            stats.update(penalties)
            if penalty is not None:
                total = total + penalty
        self._watch(total, phase=0)
        if self._drop(total, "D"):
            return {**stats, "loss/d": total.detach()}
        self._d_update(total)
        real_seen, fake_seen = real_logits.detach(), fake_logits.detach()
        stats.update(
            {
                "loss/d": total.detach(),
                "d/real": real_seen.mean(),
                "d/fake": fake_seen.mean(),
                **self._accuracy(real_seen, fake_seen),
                **self._observed_by_regularizers(real_seen, fake_seen),
            }
        )
        return stats

    def _scores(self, ctx: DContext, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """D main's logits of the real and the fake batch: one call of D on both, split, when D has
        the trait ``per-sample`` (fewer, larger operations: faster on a CPU, fewer kernels on a GPU)."""
        n = ctx.real.shape[0]
        if self.per_sample_critic and ctx.real.shape == ctx.fake.shape:
            both = self._critic(None if labels is None else torch.cat([labels, labels]), self.train_discriminator)
            logits = both(torch.cat([ctx.real, ctx.fake]))
            if isinstance(logits, Tensor) and tuple(logits.shape) == (2 * n,):
                traincheck.logits(logits, 2 * n, self.owners("discriminator"))
                logits = logits.float()
                return logits[:n], logits[n:]
            # not one logit per input: the calls below name the mistake for the batch the user chose
        return self._logits(ctx.discriminator, ctx.real), self._logits(ctx.discriminator, ctx.fake)

    def _observed_by_regularizers(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        """D main's logits to each regularizer that observes them; their ``extra_stats`` as ``NAME/key``."""
        stats: dict[str, Tensor] = {}
        for name, (reg, who) in self._observers.items():
            reg.observe_d_logits(real_logits, fake_logits)
            for key, value in reg.extra_stats().items():
                traincheck.scalar(value, who, f"extra_stats()[{key!r}]", what="a statistic")
                stats[f"{name}/{key}"] = value.detach()
        return stats

    def _accuracy(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        """D's accuracy on this D step's batches, against the loss's decision threshold (on the device)."""
        threshold = getattr(self.loss, "decision_threshold", None)
        if threshold is None:
            return {}
        return {
            "d/accuracy/real": (real_logits > threshold).float().mean(),
            "d/accuracy/fake": (fake_logits < threshold).float().mean(),
        }

    def d_reg_phase(self, real: Tensor, step: int, labels: Tensor | None = None, *, interval: int) -> dict[str, Tensor]:
        """D reg: one D update on the D penalties of ``interval`` (> 1), each multiplied by it.

        Its own forward passes on ``real`` and on fresh fakes (under ``no_grad``);
        returns the terms as ``penalty/NAME`` (empty if every penalty returned None).
        """
        self._d_trainable(True)
        critic = self._critic(labels, self.train_discriminator)
        with self._autocast():
            ctx = self._d_context(real, step, labels, critic)
            total, stats = self._penalties(self._d_lazy[interval], "d_penalty", ctx, interval)
        if total is None:
            return stats
        total = total + _zero_through(self.discriminator)
        self._watch(total, phase=0)
        if not self._drop(total, "D"):
            self._d_update(total)
        return stats

    def g_phase(self, real: Tensor, step: int, labels: Tensor | None = None) -> dict[str, Tensor]:
        """G main: one G update on the loss plus the G penalties of interval 1, through a frozen D.

        ``real`` serves losses that compare with real logits. ``loss/g`` includes the penalties.
        """
        self._d_trainable(False)
        critic = self._critic(labels)
        try:
            with self._autocast():
                ctx = self._g_context(real, step, labels, critic)
                assert ctx.fake is not None
                fake_logits = self._logits(critic, self._d_input(ctx.fake, ctx.progress))
                total = self.loss.g_loss(fake_logits, ctx)
                traincheck.scalar(total, self.owners("loss"), "g_loss")
                penalty, stats = self._penalties(self._g_main, "g_penalty", ctx, 1)
                if penalty is not None:
                    total = total + penalty
            self._watch(total, phase=1)
            if not self._drop(total, "G"):
                self._g_update(total)
        finally:
            self._d_trainable(True)
        return {**stats, "loss/g": total.detach()}

    def g_reg_phase(self, real: Tensor, step: int, labels: Tensor | None = None, *, interval: int) -> dict[str, Tensor]:
        """G reg: one G update on the G penalties of ``interval`` (> 1), each multiplied by it, D frozen.

        Its own latents and forward pass of G; returns the terms as ``penalty/g/NAME``.
        """
        self._d_trainable(False)
        critic = self._critic(labels)
        try:
            with self._autocast():
                ctx = self._g_context(real, step, labels, critic)
                total, stats = self._penalties(self._g_lazy[interval], "g_penalty", ctx, interval)
            if total is not None:
                total = total + _zero_through(self.generator)
                self._watch(total, phase=1)
                if not self._drop(total, "G"):
                    self._g_update(total)
        finally:
            self._d_trainable(True)
        return stats

    def _d_context(
        self, real: Tensor, step: int, labels: Tensor | None, critic: Callable[[Tensor], Tensor]
    ) -> DContext:
        progress = run_progress(step, self.total_steps)
        with torch.no_grad():
            fake = self._generate(self._training_latents(real.shape[0]), labels)
        traincheck.samples(fake, real.shape[0], tuple(real.shape[1:]), self.owners("generator"))
        return DContext(
            discriminator=critic,
            real=self._d_input(real, progress),
            fake=self._d_input(fake, progress),
            targets=self.targets,
            step=step,
            progress=progress,
        )

    def _g_context(
        self, real: Tensor, step: int, labels: Tensor | None, critic: Callable[[Tensor], Tensor]
    ) -> GContext:
        progress = run_progress(step, self.total_steps)
        generator = self.generator if self.train_generator is None else self.train_generator
        latents = self._training_latents(real.shape[0])
        fake = self._generate(latents, labels, generator)
        traincheck.samples(fake, real.shape[0], tuple(real.shape[1:]), self.owners("generator"))
        return GContext(
            real_logits=lambda: self._logits(critic, self._d_input(real, progress)),
            targets=self.targets,
            step=step,
            progress=progress,
            generator=generator,
            latents=latents,
            fake=fake,
            labels=labels,
        )

    def _penalties(
        self, penalties: Penalties, method: Literal["d_penalty", "g_penalty"], ctx: DContext | GContext, factor: int
    ) -> tuple[Tensor | None, dict[str, Tensor]]:
        """The sum of the penalties' terms (each times ``factor``), or None, and each term as a statistic."""
        total: Tensor | None = None
        stats: dict[str, Tensor] = {}
        prefix = "penalty/" if method == "d_penalty" else "penalty/g/"
        for name, reg in penalties:
            term = getattr(reg, method)(ctx)
            traincheck.scalar(term, self.owners(f"regularizer:{name}"), method, optional=True)
            if term is None:
                continue
            if factor != 1:
                term = term * factor
            total = term if total is None else total + term
            stats[prefix + name] = term.detach()
        return total, stats

    def _d_update(self, total: Tensor) -> None:
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()
        self.loss.after_d_step(self.discriminator)
        for reg in self.regularizers.values():
            reg.after_d_step(self.discriminator)

    def _g_update(self, total: Tensor) -> None:
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()

    def _logits(self, critic: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        logits = critic(x)
        traincheck.logits(logits, x.shape[0], self.owners("discriminator"))
        return logits.float()

    # -- helpers ------------------------------------------------------------

    def _d_trainable(self, flag: bool) -> None:
        """``discriminator.requires_grad_(flag)`` over a list of D's parameters made once: the phases
        toggle it three times a step, and walking the module tree each time costs more than the toggle."""
        if self._d_parameters is None:
            self._d_parameters = list(self.discriminator.parameters())
        for parameter in self._d_parameters:
            parameter.requires_grad_(flag)

    def _drop(self, loss: Tensor, phase: str) -> bool:
        """With ``skip_nonfinite``, whether to drop this update (a host sync per phase)."""
        if not self.skip_nonfinite or self.world.all_finite(loss):  # all ranks skip together
            return False
        self.skipped[phase] += 1
        return True

    def latents(self, n: int) -> Tensor:
        return torch.randn(n, self.z_dim, device=self.device)

    def _training_latents(self, n: int) -> Tensor:
        if self.latent_source is None:
            return self.latents(n)
        # Every rank draws the global batch from the same stream and keeps its slice.
        z = torch.randn(n * self.world.size, self.z_dim, device=self.device, generator=self.latent_source)
        return z[self.world.rank * n : (self.world.rank + 1) * n]

    def _generate(self, z: Tensor, labels: Tensor | None, network: nn.Module | None = None) -> Tensor:
        generator = self.generator if network is None else network
        return generator(z) if labels is None else generator(z, labels)

    def _critic(self, labels: Tensor | None, network: nn.Module | None = None) -> Callable[[Tensor], Tensor]:
        discriminator = self.discriminator if network is None else network
        if labels is None:
            return discriminator
        return functools.partial(discriminator, labels=labels)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # Graph capture needs autocast's weight cache off (it would outlive the capture).
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=False)

    def _d_input(self, x: Tensor, progress: float) -> Tensor:
        for reg in self.regularizers.values():
            x = reg.transform_d_input(x, progress)
        return x

    def _set_learning_rates(self, step: int) -> None:
        if self.scheduled_beta2 is not None:
            self._set_beta2(self.schedule.adam_beta2(step, self.total_steps, self.scheduled_beta2))
        factor = self.schedule.lr_multiplier(step, self.total_steps)
        if factor == self._lr_factor:
            return
        self._lr_factor = factor
        for opt in (self.opt_g, self.opt_d):
            for group, base in zip(opt.param_groups, self._base_lr[id(opt)], strict=True):
                if isinstance(group["lr"], Tensor):  # capturable optimizers read lr on the device
                    group["lr"].fill_(base * factor)
                else:
                    group["lr"] = base * factor

    def _set_beta2(self, beta2: float) -> None:
        if beta2 == self._beta2:
            return
        traincheck.beta2(beta2, self.owners("scheduler"))
        self._beta2 = beta2
        for opt in (self.opt_g, self.opt_d):
            power = self._beta2_power[id(opt)]
            for group in opt.param_groups:
                group["betas"] = (group["betas"][0], float(beta2) ** power)
