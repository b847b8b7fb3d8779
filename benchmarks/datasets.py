"""Real data at scale: ``ganforge data prepare`` throughput, time to the first step and peak memory.

For each image count and size it writes a synthetic JPEG folder itself (two classes of
smooth random pictures with noise, written by a pool of processes), then measures

* ``prepare``: ``ganforge data prepare DIR --out PREP --size N`` in a fresh process,
  in images per second (decoding included, not the process start);
* ``first step``: ``ganforge run --data prepared:root=PREP`` with ``--data-mode resident``
  and ``streamed`` (and ``folder:root=DIR``, ``--data-mode auto``, with ``--folder``) from
  the process start to its first logged step, in seconds;
* ``peak RSS``: the run process's peak resident memory (``os.wait4``'s ``ru_maxrss``),
  and the images' uint8 size beside it.

Runs are dcgan at width 8, batch 64, 3 steps, on the CPU, no metrics, so the data
dominates. Results go to ``--json`` and print as the Markdown table in docs/datasets.md::

    python benchmarks/datasets.py --counts 5000,10000,20000,40000 --sizes 64,128 --json results/datasets.json
    python benchmarks/datasets.py --quick     # 500 images at 64: the script end to end
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
    """Run ``command``: its wall time, its own peak RSS in MiB (``os.wait4``), its output and,
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


def train(data: str, out: Path, mode: str = "auto") -> dict[str, Any]:
    command = [*GANFORGE, "run", "--data", data, "--data-mode", mode,
               "--gen", "dcgan:width=8", "--disc", "dcgan:width=8",
               "--steps", "3", "--batch-size", "64", "--device", "cpu", "--metric", "none", "--log-every", "1",
               "--sample-every", "0", "--checkpoint-every", "0", "--quiet", "--out", str(out)]  # fmt: skip
    measured = run_process(command, out / "metrics.jsonl")
    del measured["output"]
    return measured


def measure(count: int, size: int, scratch: Path, workers: int, folder_too: bool) -> dict[str, Any]:
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
        "resident": train(f"prepared:root={prepared}", scratch / f"run-r-{count}-{size}", "resident"),
        "streamed": train(f"prepared:root={prepared}", scratch / f"run-s-{count}-{size}", "streamed"),
    }  # fmt: skip
    if folder_too:
        row["folder"] = train(f"folder:root={source},size={size}", scratch / f"run-f-{count}-{size}")
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
    return "\n".join(lines) + f"\n\nbaseline (imports only): {report['baseline_mib']:,.0f} MiB peak RSS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="5000,10000,20000,40000", help="image counts, comma-separated")
    parser.add_argument("--sizes", default="64,128", help="image sides, comma-separated")
    parser.add_argument("--folder", action="store_true", help="also train on the JPEG folder itself (folder:)")
    parser.add_argument("--quick", action="store_true", help="500 images at 64 only")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing the JPEGs")
    parser.add_argument("--scratch", type=Path, default=None, help="where the folders go [default: a temp dir]")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args()
    counts = [500] if args.quick else [int(c) for c in args.counts.split(",")]
    sizes = [64] if args.quick else [int(s) for s in args.sizes.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="ganforge-datasets-", dir=args.scratch))
    try:
        rows = [measure(c, s, scratch, args.workers, args.folder) for s in sizes for c in counts]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "baseline_mib": baseline_mib(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(table(report))


if __name__ == "__main__":
    main()
