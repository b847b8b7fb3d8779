"""Where a run trains and how fast: the device, and the speed features used on it.

Each speed feature can be turned off in the configuration (``--precision fp32``,
``--no-cuda-graph``, ``--no-channels-last``, ``--no-fused-adam``), for debugging
or to compare against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ganforge_core.components import Regularizer
from ganforge_core.config import Plan
from ganforge_core.errors import ConfigError


@dataclass(frozen=True)
class FastPath:
    """Speed features for this run; each can be turned off in the config."""

    autocast: torch.dtype | None
    channels_last: bool
    fused_adam: bool
    cuda_graph: bool
    cudnn_benchmark: bool = False
    graph_blocker: str = ""
    layout_note: str = ""  # why a CPU run keeps the default layout though --channels-last is on

    def describe(self) -> str:
        on = [
            name
            for name, enabled in (
                ("bf16 autocast", self.autocast is not None),
                ("channels-last", self.channels_last),
                ("fused Adam", self.fused_adam),
                ("CUDA graph", self.cuda_graph),
                ("cuDNN autotuning", self.cudnn_benchmark),
            )
            if enabled
        ]
        text = "fast path: " + (", ".join(on) if on else "off (eager fp32)")
        text += f"; no channels-last: {self.layout_note}" if self.layout_note else ""
        return text + (f"; no CUDA graph: {self.graph_blocker}" if self.graph_blocker else "")


def choose_fast_path(plan: Plan, device: torch.device, data_dims: int) -> FastPath:
    config, cuda = plan.config, device.type == "cuda"
    wants_bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
    blockers = [c.component.label for c in (plan.loss, *plan.regularizers) if "graph-safe" not in c.traits]
    if "beta2-schedule" in plan.scheduler.traits:  # fused Adam's captured kernels hold beta2 as a constant
        blockers.append(plan.scheduler.component.label)
    if config.on_nan == "skip":
        blockers.insert(0, "--on-nan skip")
    blocker = ""
    if cuda and config.cuda_graph and blockers:
        blocker = f"{blockers[0]} depends on the step number or host values (not graph-safe)"
    return FastPath(
        autocast=torch.bfloat16 if wants_bf16 else None,
        # On the CPU too: oneDNN's NHWC convolutions made the dcgan step on 28x28 digits
        # about 8% faster on one thread (docs/performance.md); MPS keeps the default.
        channels_last=device.type in ("cuda", "cpu") and config.channels_last and data_dims == 4,
        # torch's fused Adam runs on CUDA and, since torch 2.4, on the CPU, where its one
        # kernel per step measured 3.4x faster than the default per-tensor Adam
        # (docs/performance.md); MPS keeps the default.
        fused_adam=device.type in ("cuda", "cpu") and config.fused_adam,
        cuda_graph=cuda and config.cuda_graph and not blockers,
        cudnn_benchmark=cuda and config.cudnn_benchmark,
        graph_blocker=blocker,
    )


def cpu_layout_blocker(plan: Plan, regularizers: Mapping[str, Regularizer], networks: Iterable[nn.Module]) -> str:
    """Why channels-last would make this CPU run slower, or "" (docs/performance.md, measured on one
    thread): oneDNN ran the double backward of an input-gradient penalty 5-28% slower in NHWC for
    dcgan, stylegan2 and r3gan's D, and r3gan's grouped convolutions slower even without one, so a
    run whose D pays that penalty every D step, or whose networks hold grouped convolutions, keeps
    the default layout; a lazy penalty (every k > 1) leaves channels-last on."""
    traits = {chosen.component.name: chosen.traits for chosen in plan.regularizers}
    if "input-gradient-penalty" in plan.loss.traits:
        return f"loss '{plan.loss.component.name}' differentiates D's input every D step"
    for name, reg in regularizers.items():
        if "input-gradient-penalty" in traits.get(name, ()) and getattr(reg, "d_penalty_every", 1) == 1:
            return f"regularizer '{name}' differentiates D's input every D step"
    for network in networks:
        for module in network.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d) and module.groups > 1:
                return f"{type(network).__name__} holds grouped convolutions"
    return ""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but CUDA is not available here; use --device cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}' asked for, but there are {torch.cuda.device_count()} CUDA devices")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' asked for, but MPS is not available here; use --device cpu")
    return torch.device(name)
