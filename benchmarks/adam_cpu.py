#!/usr/bin/env python
"""Time one Adam step on the CPU three ways: per-tensor (torch's CPU default), foreach, fused.

The parameters are those of the default ``ganforge run --gen mlp --data ring-8``
networks (G and D together), with random gradients; the three optimizers step in
interleaved blocks and the median per step is printed. ganforge uses the fused one on
the CPU (``--no-fused-adam`` turns it off); see docs/performance.md.

Usage::

    python benchmarks/adam_cpu.py [--threads 1] [--blocks 7] [--steps 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ganforge_core import RunConfig, get_registry, resolve
from ganforge_core.plugins import get_plugins
from ganforge_core.run import Run

VARIANTS = {"per-tensor": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = RunConfig.model_validate({"generator": "mlp", "dataset": "ring-8", "device": "cpu"})
    run = Run(resolve(config, get_registry()), get_plugins(), Path(tempfile.gettempdir()) / "ganforge-never-written")
    params = [*run.generator.parameters(), *run.discriminator.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    print(f"{sum(p.numel() for p in params):,} parameters in {len(params)} tensors, {args.threads} thread(s)")
    optimizers = {name: torch.optim.Adam(params, lr=1e-4, **kw) for name, kw in VARIANTS.items()}
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(args.blocks):
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            times[name].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times["per-tensor"])
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:>10}: {median * 1e3:6.2f} ms per step ({base / median:.2f}x the per-tensor step)")


if __name__ == "__main__":
    main()
