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

The last two columns score each defect on the digits the classifier never trained on,
as ``classifier-fid``'s like-for-like pair does: ``heldout-fid`` is those 1,000 digits,
changed, against 1,000 of the classifier's training digits; ``heldout-floor`` is the
same unchanged. A generator's ``heldout-fid`` is read against this column: its digits
are new to the classifier too.

Usage::

    python benchmarks/digit_metrics_calibration.py            # the table (minutes on a CPU)
    python benchmarks/digit_metrics_calibration.py --sets "real digits,shifted 1 px right"
    python benchmarks/digit_metrics_calibration.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge_core import get_registry
from ganforge_core.components import BuildContext
from ganforge_digit_metrics.metrics import digit_outputs, heldout_scores
from ganforge_digit_metrics.classifier import split

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

    pixels = digits.take(range(len(digits)))  # float32 in [-1, 1]
    never_seen = pixels[split(digits.labels)[1]]  # the classifier's 1,000 held-out digits
    rows = []
    for label in chosen:
        changed = DEFECTS[label](pixels).clamp(-1, 1)

        def generate(n: int, changed: Tensor = changed) -> Tensor:
            return changed[torch.randint(len(changed), (n,))]

        values: dict[str, float] = {}
        for name, metric in metrics.items():
            values.update({f"{name}/{key}": value for key, value in metric.compute(generate, digits).items()})
        _, held_features = digit_outputs(DEFECTS[label](never_seen).clamp(-1, 1))
        values.update({f"held-out/{key}": value for key, value in heldout_scores(held_features, 1, 5).items()})
        rows.append({"set": label, **values})
        print(f"scored: {label}", file=sys.stderr)

    print(table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "seed": args.seed, "torch": torch.__version__}, handle, indent=2)
    return 0


def table(rows: list[dict[str, float | str]]) -> str:
    columns = [
        ("classes", "digit-classes/classes", "{:.0f}"),
        ("class KL", "digit-classes/kl", "{:.4f}"),
        ("FID", "classifier-fid/fid", "{:.1f}"),
        ("FID floor", "classifier-fid/real-floor", "{:.1f}"),
        ("KID", "classifier-kid/kid", "{:.2f}"),
        ("precision", "precision-recall/precision", "{:.2f}"),
        ("recall", "precision-recall/recall", "{:.2f}"),
        ("held-out FID", "held-out/heldout-fid", "{:.1f}"),
        ("held-out floor", "held-out/heldout-floor", "{:.1f}"),
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
