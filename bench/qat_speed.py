"""QAT training-step time (#6) on the Fashion-MNIST reference models (accuracy: bench/qat_accuracy.py).

    speed:    one SGD step (forward, cross-entropy, backward, update) at batch 128 on Fashion-MNIST
              shapes: fp32 (the float model, eager), torchquantx prepare_qat (straight-through and
              learnable=True), and PyTorch's prepare_qat_fx (qconfig "fbgemm"), measured in one
              run, interleaved, median of --steps; --repeats runs it several times.

    nice -n 10 python3 bench/qat_speed.py speed --steps 10 --repeats 3
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

import torchquantx as tqx
from torchquantx.data import fashion_mnist_loader
from torchquantx.models import load_reference, reference_names


def _step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def _fx_qat(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx
    return prepare_qat_fx(copy.deepcopy(model).train(), get_default_qat_qconfig_mapping("fbgemm"), (x,))


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    x, y = next(iter(fashion_mnist_loader("train", args.batch, shuffle=True)))
    print(f"training step, batch {args.batch}, {args.threads} thread(s), median of {args.steps} "
          f"(ratios measured in this run)")
    print(f"{'model':<10} {'fp32 ms':>8} {'tqx QAT ms':>10} {'tqx LSQ ms':>10} {'FX QAT ms':>10} {'tqx/fp32':>9} "
          f"{'LSQ/fp32':>9} {'tqx/FX':>7}")
    for name in [m for _ in range(args.repeats) for m in args.models]:
        model = load_reference(name).train()
        steps: Dict[str, Callable[[], None]] = {
            "fp32": _step_fn(copy.deepcopy(model), x, y),
            "tqx": _step_fn(tqx.prepare_qat(copy.deepcopy(model), qconfig="fbgemm"), x, y),
            "lsq": _step_fn(tqx.prepare_qat(copy.deepcopy(model), qconfig="fbgemm", learnable=True), x, y),
            "fx": _step_fn(_fx_qat(model, x), x, y),
        }
        times: Dict[str, List[float]] = {k: [] for k in steps}
        for k, fn in steps.items():  # warm-up (TorchScript profiling runs)
            for _ in range(3):
                fn()
        for _ in range(args.steps):
            for k, fn in steps.items():
                t0 = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t0) * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:<10} {med['fp32']:8.1f} {med['tqx']:10.1f} {med['lsq']:10.1f} {med['fx']:10.1f} "
              f"{med['tqx'] / med['fp32']:9.2f} {med['lsq'] / med['fp32']:9.2f} {med['tqx'] / med['fx']:7.2f}",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="speed", choices=("speed",))
    p.add_argument("--models", nargs="+", default=reference_names(), choices=reference_names())
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=1, help="speed: runs of the whole measurement per model")
    args = p.parse_args()
    speed(args)


if __name__ == "__main__":
    main()
