"""Real data at scale: ``ganforge data prepare`` throughput, time to the first step and peak memory.

For each image count and size it writes a synthetic JPEG folder itself (two classes of
smooth random pictures with noise, written by a pool of processes), then measures

* ``prepare``: ``ganforge data prepare DIR --out PREP --size N`` in a fresh process,
  in images per second (decoding included, not the process start);
* ``first step``: ``ganforge run --data prepared:root=PREP`` with ``--data-mode resident``
  and ``streamed`` (and ``folder:root=DIR``, ``--data-mode auto``, with ``--folder``) from
  the process start to its first logged step, in seconds (the fastest of ``--repeats`` runs:
  on a shared machine the others' load only ever adds to it);
* ``peak RSS``: the run process's peak resident memory (``os.wait4``'s ``ru_maxrss``),
  and the images' uint8 size beside it (a resident ``prepared`` run fills its samples in the
  background: a 3-step run may end before the fill, below its steady 1x the uint8 size).

Runs are dcgan at width 8, batch 64, 3 steps, on the CPU, no metrics, so the data
dominates. With ``--loader``, for each size, on the first count's prepared directory,
in this process: the images per second the streaming loader delivers
(:class:`~ganforge_core.streaming.StreamingSampler` with ``--loader-workers`` DataLoader
workers: read, collated, scaled to float32) beside the images per second the dcgan
training step consumes (default widths, resident data, the same batch size, on the
CPU), and their ratio: above 1 the loader is not the bottleneck. The CPUs this process
may use are in the report (``cpus``); run it under ``taskset -c 0`` to give the loader's
workers and the step one core. Results go to ``--json`` and print as the Markdown
tables in docs/datasets.md::

    python benchmarks/datasets.py --counts 5000,10000,20000,40000 --sizes 64,128 --json results/datasets.json
    taskset -c 0 python benchmarks/datasets.py --counts 5000 --sizes 64,128 --loader
    python benchmarks/datasets.py --quick --loader  # 500 images at 64: the script end to end
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GANFORGE = [sys.executable, "-c", "from ganforge_core.cli import main; main()"]
PER_TASK = 250  # images written per worker task


def _write_images(task: tuple[Path, int, int, int]) -> None:
    from PIL import Image

    folder, start, count, size = task
    rng = np.random.default_rng(start)
    for index in range(start, start + count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        noisy = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"{index:06d}.jpg", quality=90)


def write_jpeg_folder(root: Path, count: int, size: int, workers: int) -> None:
    """``count`` JPEGs of size x size in two class sub-folders of ``root``."""
    tasks = []
    for label, (start, stop) in enumerate(((0, count // 2), (count // 2, count))):
        folder = root / f"class-{label}"
        folder.mkdir(parents=True)
        tasks += [(folder, s, min(PER_TASK, stop - s), size) for s in range(start, stop, PER_TASK)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_write_images, tasks)


def run_process(command: list[str], watch: Path | None = None) -> dict[str, Any]:
    """Run ``command``: its wall time, its own peak RSS in MiB (``os.wait4``; a child starts from
    this process's RSS, so this one imports no torch and holds no data), its output and,
    when ``watch`` is its metrics.jsonl, the seconds from its start to its first logged step."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        first_step = None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            logged = watch is not None and watch.exists() and '"step": 1' in watch.read_text()
            if first_step is None and logged:
                first_step = time.perf_counter() - started  # at most one poll late
            if pid:
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read()
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}\n{text}")
    return {"seconds": time.perf_counter() - started, "first_step_s": first_step,
            "peak_rss_mib": usage.ru_maxrss / 1024, "output": text}  # fmt: skip


def train(data: str, out: Path, mode: str = "auto", repeats: int = 1) -> dict[str, Any]:
    """``repeats`` runs (each into its own directory): the fastest first step, the highest peak RSS."""
    runs = []
    for repeat in range(repeats):
        into = out.with_name(f"{out.name}-{repeat}")
        command = [*GANFORGE, "run", "--data", data, "--data-mode", mode,
                   "--gen", "dcgan:width=8", "--disc", "dcgan:width=8",
                   "--steps", "3", "--batch-size", "64", "--device", "cpu", "--metric", "none", "--log-every", "1",
                   "--sample-every", "0", "--checkpoint-every", "0", "--quiet", "--out", str(into)]  # fmt: skip
        runs.append(run_process(command, into / "metrics.jsonl"))
    return {"first_step_s": min(r["first_step_s"] for r in runs), "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "seconds": min(r["seconds"] for r in runs), "first_steps_s": [r["first_step_s"] for r in runs]}  # fmt: skip


def loader_rate(prepared: Path, batch: int, workers: int, seconds: float) -> float:
    """Images per second a StreamingSampler with ``workers`` workers delivers from ``prepared``,
    as float32 in the model's scale on the CPU, after its first batch (the workers' start)."""
    import torch

    from ganforge_core.streaming import StreamingSampler
    from ganforge_datasets.prepared import open_prepared

    source, _ = open_prepared(prepared)
    sampler = StreamingSampler(source, batch, 0, torch.device("cpu"), workers=workers)
    try:
        sampler.draw()
        drawn, started = 0, time.perf_counter()
        while drawn < 4 or time.perf_counter() - started < seconds:
            drawn += len(sampler.draw().samples)
        return drawn / (time.perf_counter() - started)
    finally:
        sampler.close()


def step_rate(prepared: Path, batch: int, steps: int, out: Path) -> float:
    """Real images per second the dcgan training step (default widths) consumes on the CPU:
    batch x D steps per G step over the time of ``steps`` steps after a first one, data resident."""
    from ganforge_core import RunConfig, resolve
    from ganforge_core.plugins import get_plugins
    from ganforge_core.run import Run

    config = RunConfig.model_validate({
        "generator": "dcgan", "discriminator": "dcgan", "dataset": f"prepared:root={prepared}",
        "device": "cpu", "batch_size": batch, "steps": steps + 1, "metrics": [], "data_mode": "resident",
        "sample_every": 0, "checkpoint_every": 0, "out": str(out),
    })  # fmt: skip
    plugins = get_plugins()
    run = Run(resolve(config, plugins.registry), plugins, out)
    run.engine.step(0)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        run.engine.step(step)
    return steps * batch * run.plan.d_steps / (time.perf_counter() - started)


def loader_vs_step(prepared: Path, size: int, workers: int, scratch: Path, quick: bool) -> dict[str, Any]:
    batch = 64
    loader = loader_rate(prepared, batch, workers, 2.0 if quick else 10.0)
    step = step_rate(prepared, batch, 2 if quick else 5, scratch / f"run-step-{size}")
    return {"size": size, "batch": batch, "workers": workers, "loader_img_per_s": loader,
            "step_img_per_s": step, "ratio": loader / step}  # fmt: skip


def measure(count: int, size: int, scratch: Path, workers: int, folder_too: bool,
            loader: tuple[int, bool] | None = None, repeats: int = 1) -> dict[str, Any]:  # fmt: skip
    source, prepared = scratch / f"jpeg-{count}-{size}", scratch / f"prepared-{count}-{size}"
    write_jpeg_folder(source, count, size, workers)
    command = [*GANFORGE, "data", "prepare", str(source), "--out", str(prepared), "--size", str(size)]
    done = run_process(command)
    # The command's own report: "prepared N images (...) in DIR in S s (R images/s)".
    rate = float(done["output"].rsplit("(", 1)[1].split(" images/s")[0].replace(",", ""))
    row: dict[str, Any] = {
        "images": count, "size": size, "uint8_mib": count * 3 * size * size / 2**20,
        "jpeg_mib": sum(p.stat().st_size for p in source.rglob("*.jpg")) / 2**20,
        "prepare_img_per_s": rate,
        "resident": train(f"prepared:root={prepared}", scratch / f"run-r-{count}-{size}", "resident", repeats),
        "streamed": train(f"prepared:root={prepared}", scratch / f"run-s-{count}-{size}", "streamed", repeats),
    }  # fmt: skip
    if folder_too:
        row["folder"] = train(f"folder:root={source},size={size}", scratch / f"run-f-{count}-{size}", "auto", repeats)
    if loader is not None:  # in a process of its own: this one stays small, for the RSS of the runs it starts
        code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import datasets; "
                f"print(json.dumps(datasets.loader_vs_step(datasets.Path({str(prepared)!r}), {size}, {loader[0]}, "
                f"datasets.Path({str(scratch)!r}), {loader[1]})))")  # fmt: skip
        done = run_process([sys.executable, "-c", code])
        row["loader"] = json.loads(done["output"].strip().splitlines()[-1])
    shutil.rmtree(source)
    shutil.rmtree(prepared)
    return row


def baseline_mib() -> float:
    """Peak RSS of a process that imports what a run imports and does nothing else."""
    code = "import torch, ganforge_core.session, ganforge_datasets.prepared"
    process = subprocess.Popen([sys.executable, "-c", code])
    _, _, usage = os.wait4(process.pid, 0)
    return usage.ru_maxrss / 1024


def table(report: dict[str, Any]) -> str:
    folder = any("folder" in row for row in report["rows"])
    head = ("| images | size | JPEG MiB | uint8 MiB | prepare img/s | first step, resident (s) | peak RSS, resident (MiB)"
            " | first step, streamed (s) | peak RSS, streamed (MiB) |")  # fmt: skip
    head += " first step, folder (s) | peak RSS, folder (MiB) |" if folder else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in report["rows"]:
        cells = [f"{row['images']:,}", str(row["size"]), f"{row['jpeg_mib']:.0f}", f"{row['uint8_mib']:.0f}",
                 f"{row['prepare_img_per_s']:,.0f}"]  # fmt: skip
        for mode in ("resident", "streamed", *(("folder",) if folder else ())):
            cells += [f"{row[mode]['first_step_s']:.1f}", f"{row[mode]['peak_rss_mib']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + f"\n\nbaseline (imports only): {report['baseline_mib']:,.0f} MiB peak RSS"
    loaders = [row["loader"] for row in report["rows"] if "loader" in row]
    if loaders:
        text += f"\n\nloader vs dcgan step, CPUs {report['cpus']} (the loader's workers and the step share them):\n\n"
        text += "| size | batch | loader workers | loader img/s | dcgan step img/s | loader / step |\n"
        text += "|---|---|---|---|---|---|\n"
        text += "\n".join(f"| {r['size']} | {r['batch']} | {r['workers']} | {r['loader_img_per_s']:,.0f} "
                          f"| {r['step_img_per_s']:,.1f} | {r['ratio']:,.0f}x |" for r in loaders)  # fmt: skip
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="5000,10000,20000,40000", help="image counts, comma-separated")
    parser.add_argument("--sizes", default="64,128", help="image sides, comma-separated")
    parser.add_argument("--folder", action="store_true", help="also train on the JPEG folder itself (folder:)")
    parser.add_argument("--loader", action="store_true", help="also the loader's img/s vs the dcgan step's, per size")
    parser.add_argument("--loader-workers", type=int, default=1, help="the loader's DataLoader workers [default: 1]")
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode: the fastest first step is shown")
    parser.add_argument("--quick", action="store_true", help="500 images at 64 only")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing the JPEGs")
    parser.add_argument("--scratch", type=Path, default=None, help="where the folders go [default: a temp dir]")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args()
    counts = [500] if args.quick else [int(c) for c in args.counts.split(",")]
    sizes = [64] if args.quick else [int(s) for s in args.sizes.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="ganforge-datasets-", dir=args.scratch))
    try:
        loader = (args.loader_workers, args.quick) if args.loader else None
        rows = [measure(c, s, scratch, args.workers, args.folder, loader if c == counts[0] else None, args.repeats)
                for s in sizes for c in counts]  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    report = {"cpus": cpus, "load_average": os.getloadavg(), "baseline_mib": baseline_mib(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(table(report))


if __name__ == "__main__":
    main()
