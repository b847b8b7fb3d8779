"""``ada``: the augmentation probability p that follows D's overfitting (Karras et al. 2020, section 3).

The overfitting heuristic is r_t = E[sign(D(real))] over the real logits of the
last ``interval`` D updates (the engine hands them over in D main, so no extra
forward pass of D). After every ``interval`` D updates, p moves by
``sign(r_t - target) * batch_size * interval / (kimg * 1000)``: up when D calls
too many reals real (it is memorising them), down otherwise; so p can cross from
0 to 1 in ``kimg`` thousand real images. With ``anneal``, p instead follows the run's
progress from ``p`` to ``p_to`` (R3GAN's augmentation schedule, brownvc/R3GAN
``train.py``), and r_t is only logged. stylegan2-ada-pytorch's
``training_loop.py`` clamps p at 0 only; here p stays in [0, 1], the range a
probability has (rotation's ``sqrt(1 - p)`` needs it).

p, the running sums and the update counter live on the device (no host sync per
step) and are the checkpointed state, so a resumed run adapts exactly as one
never stopped. Under torchrun the sums are added over the ranks before each
adjustment, so every rank holds the same p.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ganforge_ada.augment import augment
from ganforge_ada.options import ADAOptions, op_names
from ganforge_core import Regularizer, anneal_shape


class ADA(Regularizer):
    def __init__(self, options: ADAOptions, batch_size: int, device: torch.device) -> None:
        self.options = options
        self.ops = op_names(options.ops)
        self.adjustment = batch_size * options.interval / (options.kimg * 1000)
        self.p = torch.tensor(options.p, dtype=torch.float32, device=device)
        self._signs = torch.zeros((), device=device)  # sum of sign(D(real)) since the last adjustment
        self._seen = torch.zeros((), device=device)  # real logits since the last adjustment
        self._batch_rt = torch.zeros((), device=device)  # the last D update's mean sign, for the log
        self.updates = 0  # D main updates observed
        self.adapts = not options.fixed and options.anneal == "none"  # p follows r_t (else it is still or scheduled)

    def scheduled_p(self, progress: float) -> float:
        """With ``anneal``: p at run progress ``progress``, from ``p`` at the start to ``p_to`` at the end."""
        o = self.options
        assert o.anneal != "none"
        return o.p + (o.p_to - o.p) * anneal_shape(o.anneal, progress)

    def transform_d_input(self, x: Tensor, progress: float) -> Tensor:
        if self.options.anneal != "none":
            self.p.fill_(self.scheduled_p(progress))
        return augment(x, self.p, self.ops, color_p=self.options.color_p)

    def observe_d_logits(self, real_logits: Tensor, fake_logits: Tensor) -> None:
        signs = real_logits.detach().float().sign()
        self._batch_rt = signs.mean()
        self._signs += signs.sum()
        self._seen += signs.numel()
        self.updates += 1
        if self.updates % self.options.interval == 0:
            self._adjust()

    def _adjust(self) -> None:
        if self.adapts:  # a p that does not adapt needs no r_t over the ranks: no collective for it
            totals = torch.stack([self._signs, self._seen])
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(totals)
            rt = totals[0] / totals[1].clamp(min=1)
            step = torch.sign(rt - self.options.target) * self.adjustment
            self.p.copy_((self.p + step).clamp(0.0, 1.0))
        self._signs.zero_()
        self._seen.zero_()

    def extra_stats(self) -> dict[str, Tensor]:
        """``p`` after this D update and ``rt``, this update's mean sign of D(real) (averaged over the
        logging window, r_t over the window)."""
        return {"p": self.p.clone(), "rt": self._batch_rt}

    def state_dict(self) -> dict[str, Any]:
        return {
            "p": self.p.detach().cpu().clone(),
            "signs": self._signs.detach().cpu().clone(),
            "seen": self._seen.detach().cpu().clone(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.p.copy_(state["p"])
        self._signs.copy_(state["signs"])
        self._seen.copy_(state["seen"])
        self.updates = int(state["updates"])
