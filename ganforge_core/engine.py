"""The training step: a D phase, then a G phase. Nothing else lives here.

Isolation between the phases is structural:

* D phase: fakes come from G under ``torch.no_grad()``, so no graph reaches G;
  only D's optimizer steps.
* G phase: D's parameters have ``requires_grad=False`` while G's loss flows
  through D; only G's optimizer steps.

Statistics stay on the device as detached tensors; the caller reads them every
few steps, so the hot loop never waits for the GPU.

Fast path (CUDA): forward passes and losses run under bf16 autocast, and once
``GRAPH_WARMUP`` eager steps have run, the whole step (all D phases and the G
phase, optimizer steps included) is captured in a CUDA graph and replayed, which
removes the per-kernel launch cost that bounds small-batch GAN training. Only
steps whose loss and regularizers declare the trait ``graph-safe`` (their work
depends on tensors alone, not on the step number or host values) are captured;
anything else runs eagerly.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganforge_core.batches import Batch, BatchSampler
from ganforge_core.components import DContext, GContext, Loss, Regularizer, Schedule, Targets
from ganforge_core.distributed import SOLO, World

GRAPH_WARMUP = 3
PHASES = ("D", "G")


@dataclass
class Engine:
    generator: nn.Module
    discriminator: nn.Module
    loss: Loss
    regularizers: Mapping[str, Regularizer]
    schedule: Schedule
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: BatchSampler
    total_steps: int
    autocast_dtype: torch.dtype | None = None
    cuda_graph: bool = False
    skip_nonfinite: bool = False
    # Distributed training (see ganforge_core.distributed): the DDP wrappers that run
    # the phases whose gradients are averaged (D in the D phase, G in the G phase), and
    # the latent stream shared by all ranks (each draws the global batch, keeps its slice).
    world: World = SOLO
    train_generator: nn.Module | None = None
    train_discriminator: nn.Module | None = None
    latent_source: torch.Generator | None = None

    def __post_init__(self) -> None:
        targets = Targets()
        for reg in self.regularizers.values():
            targets = reg.adjust_targets(targets)
        self.targets = targets
        self.z_dim = int(self.generator.z_dim)
        self.device = self.batches.samples.device
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
        self._lr_factor: float | None = None
        # Updates dropped because their loss was not finite (--on-nan skip), per phase.
        self.skipped = {"D": 0, "G": 0}
        self._eager_steps = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._side_stream: torch.cuda.Stream | None = None
        self._static_reals: list[Batch] = []
        self._static_stats: dict[str, Tensor] = {}

    # -- one step -----------------------------------------------------------

    def step(self, step: int) -> dict[str, Tensor]:
        """Run ``d_steps`` D phases and one G phase; ``step`` counts completed G steps.

        The returned tensors are valid until the next call (a replayed graph
        writes its outputs in place); :meth:`read_stats` gives their running means.
        """
        self._set_learning_rates(step)
        self._summed_steps += 1
        if self._graph is not None:
            for static in self._static_reals:
                self.batches.draw(out=static)  # straight into the graph's inputs
            self._graph.replay()
            return self._static_stats
        reals = [self.batches.draw() for _ in range(self.schedule.d_steps)]
        if self.cuda_graph and self._eager_steps >= GRAPH_WARMUP:
            return self._capture(reals, step)
        self._eager_steps += 1
        if self.cuda_graph:  # warm-up on a side stream, as CUDA graph capture requires
            # One stream for all warm-up steps: cuBLAS keeps a workspace per stream.
            side = self._side_stream = self._side_stream or torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                stats = self._run_phases(reals, step)
            torch.cuda.current_stream().wait_stream(side)
            return stats
        return self._run_phases(reals, step)

    def _run_phases(self, reals: list[Batch], step: int) -> dict[str, Tensor]:
        stats: dict[str, Tensor] = {}
        skipped_before = sum(self.skipped.values())
        for real, labels in reals:
            stats = self.d_phase(real, step, labels)
            self._watch(stats["loss/d"], phase=0)
        last_real, last_labels = reals[-1]
        stats.update(self.g_phase(last_real, step, last_labels))
        self._watch(stats["loss/g"], phase=1)
        self._steps_run.add_(1)
        if sum(self.skipped.values()) > skipped_before:  # eager only: skipping needs the host
            self._summed_steps -= 1  # a step with a dropped update stays out of the averages
            return stats
        for key, value in stats.items():
            total = self._sums.get(key)
            if total is None:  # first (eager) step: a capture only ever adds in place
                self._sums[key] = value.detach().float().clone()
            else:
                total.add_(value.detach())
        return stats

    def read_stats(self) -> dict[str, float]:
        """Mean of each statistic over the steps since the last call (one host sync)."""
        if not self._sums or not self._summed_steps:
            return {}
        keys = list(self._sums)
        stacked = torch.stack([self._sums[k] for k in keys]).div(self._summed_steps)
        means = self.world.mean_(stacked).tolist()  # over the ranks: the global batch's means
        for total in self._sums.values():
            total.zero_()
        self._summed_steps = 0
        return dict(zip(keys, means, strict=True))

    def _watch(self, loss: Tensor, phase: int) -> None:
        if self.skip_nonfinite:
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

    def _capture(self, reals: list[Batch], step: int) -> dict[str, Tensor]:
        self._static_reals = [
            Batch(real.clone(), None if labels is None else labels.clone()) for real, labels in reals
        ]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_stats = self._run_phases(self._static_reals, step)
        self._graph = graph
        graph.replay()  # capture records without running: this is the step itself
        return self._static_stats

    def d_phase(self, real: Tensor, step: int, labels: Tensor | None = None) -> dict[str, Tensor]:
        """One D update. Conditional runs pass the real batch's labels; fakes share them."""
        progress = step / self.total_steps
        self.discriminator.requires_grad_(True)
        critic = self._critic(labels, self.train_discriminator)
        with self._autocast():
            with torch.no_grad():
                fake = self._generate(real.shape[0], labels)
            ctx = DContext(
                discriminator=critic,
                real=self._d_input(real, progress),
                fake=self._d_input(fake, progress),
                targets=self.targets,
                step=step,
                progress=progress,
            )
            real_logits = critic(ctx.real).float()
            fake_logits = critic(ctx.fake).float()
            total = self.loss.d_loss(real_logits, fake_logits, ctx)
            stats = {f"loss/{k}": v for k, v in self.loss.extra_stats().items()}
            for name, reg in self.regularizers.items():
                penalty = reg.d_penalty(ctx)
                if penalty is not None:
                    total = total + penalty
                    stats[f"penalty/{name}"] = penalty.detach()
        if self._drop(total, "D"):
            return {**stats, "loss/d": total.detach()}
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()
        self.loss.after_d_step(self.discriminator)
        for reg in self.regularizers.values():
            reg.after_d_step(self.discriminator)
        stats.update(
            {
                "loss/d": total.detach(),
                "d/real": real_logits.detach().mean(),
                "d/fake": fake_logits.detach().mean(),
            }
        )
        return stats

    def g_phase(self, real: Tensor, step: int, labels: Tensor | None = None) -> dict[str, Tensor]:
        """One G update through a frozen D. ``real`` serves losses that compare with real logits."""
        progress = step / self.total_steps
        self.discriminator.requires_grad_(False)
        critic = self._critic(labels)
        try:
            with self._autocast():
                fake = self._generate(real.shape[0], labels, self.train_generator)
                fake_logits = critic(self._d_input(fake, progress)).float()
                ctx = GContext(
                    real_logits=lambda: critic(self._d_input(real, progress)).float(),
                    targets=self.targets,
                    step=step,
                    progress=progress,
                )
                loss = self.loss.g_loss(fake_logits, ctx)
            if self._drop(loss, "G"):
                return {"loss/g": loss.detach()}
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            self.discriminator.requires_grad_(True)
        for reg in self.regularizers.values():
            reg.after_g_step(self.generator, step + 1)
        return {"loss/g": loss.detach()}

    # -- helpers ------------------------------------------------------------

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

    def _generate(self, n: int, labels: Tensor | None, network: nn.Module | None = None) -> Tensor:
        z = self._training_latents(n)
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

