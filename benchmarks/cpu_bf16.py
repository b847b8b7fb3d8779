#!/usr/bin/env python
"""ganforge's step on the CPU in fp32 and under bf16 autocast (``--precision bf16``), interleaved.

Usage: python benchmarks/cpu_bf16.py [THREADS]   (default 2). See docs/performance.md.
"""
import time, statistics, tempfile, sys, torch
from pathlib import Path
from ganforge_core import RunConfig, resolve, get_registry
from ganforge_core.plugins import get_plugins
from ganforge_core.run import Run
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
cases = {
  "mnist28-dcgan-b64": {"generator": "dcgan", "dataset": "mnist-5k", "batch_size": 64, "loss": "bce"},
  "mlp2d-b100": {"generator": "mlp", "dataset": "ring-8", "batch_size": 100, "loss": "non-saturating"},
  "mnist28-default": {},
}
for name, fields in cases.items():
    runs = {}
    for prec in ("fp32", "bf16"):
        cfg = RunConfig.model_validate({**fields, "device": "cpu", "precision": prec, "steps": 1000, "metrics": []})
        runs[prec] = Run(resolve(cfg, get_registry()), get_plugins(), Path(tempfile.gettempdir()) / "never")
        for i in range(3): runs[prec].engine.step(i)
    t = {p: [] for p in runs}
    for r in range(5):
        for p, run in runs.items():
            s = time.perf_counter()
            for i in range(10): run.engine.step(10 + r * 10 + i)
            run.engine.read_stats()
            t[p].append((time.perf_counter() - s) / 10)
    f, b = statistics.median(t["fp32"]), statistics.median(t["bf16"])
    print(f"{name}: fp32 {f*1e3:.1f} ms/step, bf16 {b*1e3:.1f} ms/step, bf16 speed-up {f/b:.2f}x ({threads} threads)", flush=True)
