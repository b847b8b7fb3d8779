#!/usr/bin/env python
"""Does a conditional run's G draw the class it is given, and more than one image of it?

``class-spread`` (a metric) groups samples by the class the MNIST classifier sees, since
the Metric protocol hands a metric samples without their labels. This script asks G for
each label itself (``--per-class`` samples of each) and reports, per run directory:

* ``label-accuracy``: the share of samples the classifier puts in the class they were
  drawn for (a G that ignores its label scores ~0.1 on ten classes);
* ``spread-mean`` / ``spread-min``: as ``class-spread``, but grouped by the label asked
  for: the RMS feature distance of a label's samples over that of the real class;
* ``pixel-spread-min``: the lowest ratio, over labels, of the mean per-pixel std of 8
  samples of the label to that of the real class: the figure the ``monitors`` plugin's
  per-class check compares with its threshold (20%).

Usage (a run directory or checkpoint per argument)::

    python benchmarks/conditional_labels.py runs/RUN_A runs/RUN_B [--per-class 500]
"""

from __future__ import annotations

import argparse
import json

import torch

from ganforge_core.trained import load_trained
from ganforge_digit_metrics.measures import spread
from ganforge_digit_metrics.metrics import digit_outputs


def measure(source: str, per_class: int) -> dict[str, float]:
    trained = load_trained(source, device="cpu")
    dataset = trained.load_dataset()
    torch.manual_seed(0)
    classes = trained.num_classes
    labels = torch.arange(classes).repeat_interleave(per_class)
    samples = trained.generate(len(labels), labels=labels)
    predicted, features = digit_outputs(samples)
    reals = dataset.take(torch.arange(len(dataset)))  # float32 in the model's scale, as G draws
    _, real_features = digit_outputs(reals)
    ratios, pixel_ratios = [], []
    for c in range(classes):
        mine, real = labels == c, dataset.labels == c
        ratios.append(spread(features[mine]) / spread(real_features[real]))
        few = samples[mine][:8].flatten(1).std(dim=0).mean()
        pixel_ratios.append(float(few / reals[real][:256].flatten(1).std(dim=0).mean()))
    return {
        "label-accuracy": float((predicted[:, 0] == labels).double().mean()),
        "spread-mean": sum(ratios) / classes,
        "spread-min": min(ratios),
        "pixel-spread-min": min(pixel_ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="run directories or checkpoint files of --conditional runs")
    parser.add_argument("--per-class", type=int, default=500, help="samples drawn for each label")
    args = parser.parse_args()
    for source in args.sources:
        print(json.dumps({"source": source, **measure(source, args.per_class)}))


if __name__ == "__main__":
    main()
