"""QAT measurements (#6): training-step time and fine-tuning accuracy on the reference models.

    speed:    one SGD step (forward, cross-entropy, backward, update) at batch 128 on Fashion-MNIST
              shapes: fp32 (the float model, eager), torchquantx prepare_qat (straight-through and
              learnable=True), and PyTorch's prepare_qat_fx (qconfig "fbgemm"), measured in one
              run, interleaved, median of --steps; --repeats runs it several times.
    accuracy: from the trained checkpoint, PTQ (prepare + calibrate 16 x 32 train images + convert)
              versus W8A8 QAT fine-tuning for --qat-images training images (1 epoch = 60000), then
              freeze_bn_stats + disable_observer for the last 10% and convert; test-set accuracy of
              both int8 models (target quantx).

    nice -n 10 python3 bench/qat_speed.py speed
    nice -n 10 python3 bench/qat_speed.py accuracy --qat-images 60000
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


def _accuracy(model: torch.nn.Module, limit: int) -> float:
    correct = total = 0
    with torch.no_grad():
        for xb, yb in fashion_mnist_loader("test", 500, limit=limit):
            correct += (model(xb).argmax(1) == yb).sum().item()
            total += len(yb)
    return 100.0 * correct / total


def accuracy(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"test accuracy (%) on {args.test_images} test images; QAT: {args.qat_images} training images "
          f"(batch {args.batch}, SGD lr {args.lr} momentum 0.9), qconfig fbgemm, target quantx")
    print(f"{'model':<10} {'fp32':>6} {'PTQ':>6} {'QAT':>6} {'QAT min':>8}")
    for name in args.models:
        model = load_reference(name)
        fp32 = _accuracy(model, args.test_images)
        prepared = tqx.prepare(model, qconfig="fbgemm")
        tqx.calibrate(prepared, fashion_mnist_loader("train", 32, shuffle=True), num_batches=16, progress=False)
        ptq = _accuracy(tqx.convert(prepared), args.test_images)
        qat = tqx.prepare_qat(load_reference(name).train(), qconfig="fbgemm")
        opt = torch.optim.SGD(qat.parameters(), lr=args.lr, momentum=0.9)
        steps = max(1, args.qat_images // args.batch)
        t0 = time.perf_counter()
        for i, (xb, yb) in enumerate(fashion_mnist_loader("train", args.batch, shuffle=True, seed=1)):
            if i == steps:
                break
            if i == int(steps * 0.9):
                tqx.freeze_bn_stats(qat)
                tqx.disable_observer(qat)
            loss = F.cross_entropy(qat(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        minutes = (time.perf_counter() - t0) / 60
        qat_acc = _accuracy(tqx.convert(qat.eval()), args.test_images)
        print(f"{name:<10} {fp32:6.2f} {ptq:6.2f} {qat_acc:6.2f} {minutes:8.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("speed", "accuracy"))
    p.add_argument("--models", nargs="+", default=reference_names(), choices=reference_names())
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=1, help="speed: runs of the whole measurement per model")
    p.add_argument("--qat-images", type=int, default=60000, help="training images for QAT (60000 = 1 epoch)")
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()
    speed(args) if args.what == "speed" else accuracy(args)


if __name__ == "__main__":
    main()
