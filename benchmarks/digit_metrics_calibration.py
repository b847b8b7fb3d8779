#!/usr/bin/env python
"""What the digit metrics say about known, man-made changes to real mnist-5k digits.

A GAN's ``classifier-fid`` of 80 means little on its own. This script scores sets whose
quality is known: the real digits themselves, real digits the metrics' classifier never
trained on, and real digits with one defect each (pixel noise, a shift, a blur, strokes
made thicker or thinner). The results are a ruler to read a run's numbers against
(docs/benchmarks.md, "Reading the digit metrics").

Each row is scored exactly as ``ganforge eval`` scores a generator on mnist-5k:
``digit-classes`` (10,000 samples; here, a draw of the 5,000 digits with replacement),
``classifier-fid`` / ``classifier-kid`` / ``precision-recall`` with their real floors
(2,500 samples against halves of the 5,000 real digits, averaged over 5 halvings).

One more comparison, at 500 per side, shows how far the floor is from what *new* real
digits score: the classifier trained on 4,000 of the 5,000 digits (400 per class), and
its features of those 4,000 are tighter than of the 1,000 it never saw.

Usage::

    python benchmarks/digit_metrics_calibration.py            # the table (minutes on a CPU)
    python benchmarks/digit_metrics_calibration.py --sets "real digits,shifted 1 px right"
    python benchmarks/digit_metrics_calibration.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge_core import get_registry
from ganforge_core.components import BuildContext
from ganforge_digit_metrics import digit_outputs
from ganforge_digit_metrics.classifier import split
from ganforge_digit_metrics.measures import fid

BLUR = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16

DEFECTS: dict[str, Callable[[Tensor], Tensor]] = {
    "real digits": lambda x: x,
    "pixel noise, sd 0.1": lambda x: x + 0.1 * torch.randn_like(x),
    "pixel noise, sd 0.3": lambda x: x + 0.3 * torch.randn_like(x),
    "shifted 1 px right": lambda x: torch.roll(x, 1, dims=3),
    "shifted 2 px right": lambda x: torch.roll(x, 2, dims=3),
    "strokes thicker (3x3 max)": lambda x: F.max_pool2d(x, 3, 1, 1),
    "blurred (3x3 binomial)": lambda x: F.conv2d(x, BLUR[None, None], padding=1),
    "strokes thinner (3x3 min)": lambda x: -F.max_pool2d(-x, 3, 1, 1),
}
METRICS = ("digit-classes", "classifier-fid", "classifier-kid", "precision-recall")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", default="", help=f"comma-separated rows to score (default: all): {', '.join(DEFECTS)}")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.sets.split(",") if name.strip()] or list(DEFECTS)
    unknown = [name for name in chosen if name not in DEFECTS]
    if unknown:
        parser.error(f"unknown set {unknown[0]!r}; valid: {', '.join(DEFECTS)}")

    torch.manual_seed(args.seed)
    registry = get_registry()
    ctx = BuildContext(
        data_shape=(1, 28, 28), num_classes=10, total_steps=1, batch_size=1, device=torch.device("cpu"), seed=args.seed
    )
    data_entry = registry.get("dataset", "mnist-5k")
    digits = data_entry.build(data_entry.validate({}), ctx)
    metrics = {}
    for name in METRICS:
        entry = registry.get("metric", name)
        metrics[name] = entry.build(entry.validate({}), ctx)

    rows = []
    for label in chosen:
        changed = DEFECTS[label](digits.samples).clamp(-1, 1)

        def generate(n: int, changed: Tensor = changed) -> Tensor:
            return changed[torch.randint(len(changed), (n,))]

        values: dict[str, float] = {}
        for name, metric in metrics.items():
            values.update({f"{name}/{key}": value for key, value in metric.compute(generate, digits).items()})
        rows.append({"set": label, **values})
        print(f"scored: {label}", file=sys.stderr)

    held_out = held_out_gap(digits.samples, digits.labels)
    print(table(rows))
    print()
    print(
        f"classifier FID at 500 per side, 10 draws: its training digits against its training digits "
        f"{held_out['train-vs-train']:.1f}, digits it never saw against its training digits "
        f"{held_out['held-out-vs-train']:.1f}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "held_out": held_out, "seed": args.seed, "torch": torch.__version__}, handle, indent=2)
    return 0


def held_out_gap(images: Tensor, labels: Tensor, n: int = 500, draws: int = 10) -> dict[str, float]:
    """FID of classifier-training digits against each other vs digits it never trained on."""
    _, features = digit_outputs(images)
    trained_on, never_seen = split(labels)  # the classifier's own split: 4,000 it trained on, 1,000 it did not

    def draw(index: Tensor) -> Tensor:
        return features[index[torch.randperm(len(index))[:n]]]

    return {
        "n": float(n),
        "train-vs-train": statistics.fmean(fid(draw(trained_on), draw(trained_on)) for _ in range(draws)),
        "held-out-vs-train": statistics.fmean(fid(draw(never_seen), draw(trained_on)) for _ in range(draws)),
    }


def table(rows: list[dict[str, float | str]]) -> str:
    columns = [
        ("classes", "digit-classes/classes", "{:.0f}"),
        ("class KL", "digit-classes/kl", "{:.4f}"),
        ("FID", "classifier-fid/fid", "{:.1f}"),
        ("FID floor", "classifier-fid/real-floor", "{:.1f}"),
        ("KID", "classifier-kid/kid", "{:.2f}"),
        ("precision", "precision-recall/precision", "{:.2f}"),
        ("recall", "precision-recall/recall", "{:.2f}"),
    ]
    lines = [
        "| set | " + " | ".join(title for title, _, _ in columns) + " |",
        "|---|" + "|".join("---:" for _ in columns) + "|",
    ]
    for row in rows:
        cells = [fmt.format(row[key]) for _, key, fmt in columns]
        lines.append(f"| {row['set']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
