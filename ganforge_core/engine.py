"""The training step: a D phase, then a G phase. Nothing else lives here.

Isolation between the phases is structural:

* D phase: fakes come from G under ``torch.no_grad()``, so no graph reaches G;
  only D's optimizer steps.
* G phase: D's parameters have ``requires_grad=False`` while G's loss flows
  through D; only G's optimizer steps.

Statistics stay on the device as detached tensors; the caller reads them every
few steps, so the hot loop never waits for the GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganforge_core.batches import BatchSampler
from ganforge_core.components import DContext, GContext, Loss, Regularizer, Schedule, Targets


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

    def __post_init__(self) -> None:
        targets = Targets()
        for reg in self.regularizers.values():
            targets = reg.adjust_targets(targets)
        self.targets = targets
        self.z_dim = int(self.generator.z_dim)
        self._base_lr = {
            id(opt): [group["lr"] for group in opt.param_groups] for opt in (self.opt_g, self.opt_d)
        }

    # -- one step -----------------------------------------------------------

    def step(self, step: int) -> dict[str, Tensor]:
        """Run ``d_steps`` D phases and one G phase; ``step`` counts completed G steps."""
        self._set_learning_rates(step)
        stats: dict[str, Tensor] = {}
        for _ in range(self.schedule.d_steps):
            real = self.batches.next()
            stats = self.d_phase(real, step)
        stats.update(self.g_phase(real, step))
        return stats

    def d_phase(self, real: Tensor, step: int) -> dict[str, Tensor]:
        progress = step / self.total_steps
        self.discriminator.requires_grad_(True)
        with torch.no_grad():
            fake = self.generator(self.latents(real.shape[0]))
        ctx = DContext(
            discriminator=self.discriminator,
            real=self._d_input(real, progress),
            fake=self._d_input(fake, progress),
            targets=self.targets,
            step=step,
            progress=progress,
        )
        real_logits = self.discriminator(ctx.real)
        fake_logits = self.discriminator(ctx.fake)
        adversarial = self.loss.d_loss(real_logits, fake_logits, ctx)
        total = adversarial
        stats = {f"loss/{k}": v for k, v in self.loss.extra_stats().items()}
        for name, reg in self.regularizers.items():
            penalty = reg.d_penalty(ctx)
            if penalty is not None:
                total = total + penalty
                stats[f"penalty/{name}"] = penalty.detach()
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()
        stats.update(
            {
                "loss/d": total.detach(),
                "d/real": real_logits.detach().mean(),
                "d/fake": fake_logits.detach().mean(),
            }
        )
        return stats

    def g_phase(self, real: Tensor, step: int) -> dict[str, Tensor]:
        progress = step / self.total_steps
        self.discriminator.requires_grad_(False)
        try:
            fake = self.generator(self.latents(real.shape[0]))
            fake_logits = self.discriminator(self._d_input(fake, progress))
            ctx = GContext(
                real_logits=lambda: self.discriminator(self._d_input(real, progress)),
                targets=self.targets,
                step=step,
                progress=progress,
            )
            loss = self.loss.g_loss(fake_logits, ctx)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            self.discriminator.requires_grad_(True)
        for reg in self.regularizers.values():
            reg.after_g_step(self.generator, step + 1)
        return {"loss/g": loss.detach()}

    # -- helpers ------------------------------------------------------------

    def latents(self, n: int) -> Tensor:
        device = next(self.generator.parameters()).device
        return torch.randn(n, self.z_dim, device=device)

    def _d_input(self, x: Tensor, progress: float) -> Tensor:
        for reg in self.regularizers.values():
            x = reg.transform_d_input(x, progress)
        return x

    def _set_learning_rates(self, step: int) -> None:
        factor = self.schedule.lr_multiplier(step, self.total_steps)
        for opt in (self.opt_g, self.opt_d):
            for group, base in zip(opt.param_groups, self._base_lr[id(opt)], strict=True):
                group["lr"] = base * factor
