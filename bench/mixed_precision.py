"""Mixed precision to an accuracy target on the Fashion-MNIST reference models (issue #7).

    PYTHONPATH=. python3 bench/mixed_precision.py [--models mobilenet resnet] [--drops 1.0 0.3] [--weight-bits 4]

For each model: tqx.quantize_to_target with top-1 on the 10 000 test images as the metric and
fp32 minus the drop as the target, 8 x 64 calibration images, one thread; prints the plan
(float layers, accuracies, time per 64-image batch of fp32 / all int8 / the plan) and the search time.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

import torchquantx as tqx
from torchquantx.data import calibration_subset, fashion_mnist_loader
from torchquantx.models import load_reference


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mobilenet", "resnet"])
    p.add_argument("--drops", nargs="+", type=float, default=[1.0, 0.3], help="allowed top-1 drop per model")
    p.add_argument("--weight-bits", type=int, default=4)
    p.add_argument("--candidates", type=int, default=8)
    args = p.parse_args()
    if len(args.drops) != len(args.models):
        p.error(f"--drops needs one value per model ({len(args.models)}), got {len(args.drops)}")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="An output with one or more elements was resized")
    test = list(fashion_mnist_loader(split="test", batch_size=1000))
    calib = list(calibration_subset(512).split(64))

    def top1(model) -> float:
        correct = total = 0
        with torch.no_grad():
            for x, y in test:
                correct += int((model(x).argmax(1) == y).sum())
                total += len(y)
        return 100.0 * correct / total

    for name, drop in zip(args.models, args.drops):
        start = time.time()
        _, plan = tqx.quantize_to_target(load_reference(name), calib, metric=top1, max_drop=drop, num_batches=8,
                                         progress=False, weight_bits=args.weight_bits, candidates=args.candidates)
        print(f"{name}, W{args.weight_bits}A8, max_drop {drop}: {time.time() - start:.0f} s")
        print(plan.describe(), flush=True)


if __name__ == "__main__":
    main()
