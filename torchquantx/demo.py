"""The main job on built-in data: train a small CNN on Fashion-MNIST, then quantize it with the
graph-mode pipeline (prepare -> calibrate -> convert), save and reload the int8 TorchScript file,
and compare fp32 with int8: accuracy, file size and latency.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import List

import torch
from torch import nn

from .data import DEFAULT_FASHION_MNIST_DIR, load_fashion_mnist

try:
    from tqdm import tqdm
except ImportError:  # tqdm is a dependency, but the demo must not die without it
    def tqdm(it, **_kw):  # type: ignore[no-redef]
        return it


class SmallCNN(nn.Module):
    """Two conv blocks and two linear layers: ~0.2M parameters, ~90% on Fashion-MNIST."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int, progress: bool) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(x.shape[0])
        steps = range(0, x.shape[0], batch)
        for i in tqdm(steps, desc=f"train epoch {epoch + 1}/{epochs}", disable=not progress, unit="batch"):
            idx = order[i:i + batch]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return time.perf_counter() - start


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    noise = (ref - approx).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(ref.pow(2).sum().item() / noise)


def time_ms(fn, repeat: int = 20) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return samples[len(samples) // 2] * 1e3


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="torchquantx demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_FASHION_MNIST_DIR, help="directory with the Fashion-MNIST idx files")
    p.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    p.add_argument("--calib-batches", type=int, default=32, help="calibration batches of 64 images (default 32)")
    p.add_argument("--qconfig", default="x86", choices=["x86", "fbgemm", "onednn", "qnnpack"],
                   help="quantization preset (default x86)")
    p.add_argument("--target", default="quantx", choices=["quantx", "native"],
                   help="int8 runtime: torchquantx's kernels (default) or PyTorch's quantized ops")
    p.add_argument("--train-images", type=int, default=None,
                   help="train on the first N training images only (default: all 60000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.calib_batches < 1:
        p.error(f"--epochs and --calib-batches should be >= 1, got {args.epochs} and {args.calib_batches}")
    progress = not args.no_progress
    torch.manual_seed(args.seed)

    import torchquantx
    x_train, y_train = load_fashion_mnist("train", args.data)
    if args.train_images is not None:
        if args.train_images < 64:
            p.error(f"--train-images should be >= 64, got {args.train_images}")
        x_train, y_train = x_train[:args.train_images], y_train[:args.train_images]
    x_test, y_test = load_fashion_mnist("test", args.data)
    print(f"torchquantx {torchquantx.__version__} demo: Fashion-MNIST ({x_train.shape[0]} train / "
          f"{x_test.shape[0]} test images), kernels: {torchquantx.active_isa()}, threads: {torch.get_num_threads()}")

    model = SmallCNN()
    seconds = train(model, x_train, y_train, args.epochs, 64, progress)
    print(f"trained SmallCNN for {args.epochs} epoch(s) in {seconds:.1f} s")

    import io
    import os
    import tempfile

    import torchquantx as tqx
    calib = [x_train[i * 64:(i + 1) * 64] for i in range(args.calib_batches)]
    prepared = tqx.prepare(model, args.qconfig)
    tqx.calibrate(prepared, calib, progress=progress)
    qmodel = tqx.convert(prepared, args.target)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = os.path.join(tmp, "fp32.pt"), os.path.join(tmp, "int8.pt")
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, fp32_path)
        torch.jit.save(qmodel, int8_path)
        fp32_size, int8_size = os.path.getsize(fp32_path), os.path.getsize(int8_path)
        reloaded = torch.jit.load(int8_path)
    summary = tqx.summary(qmodel, file=io.StringIO())
    int8_ops = sum(" -> quantized::" in line or " -> quantx::" in line for line in summary.splitlines())
    float_ops = sum(" -> float" in line for line in summary.splitlines())

    logits = predict(model, x_test)
    qlogits = predict(reloaded, x_test)
    acc = (logits.argmax(1) == y_test).float().mean().item() * 100
    qacc = (qlogits.argmax(1) == y_test).float().mean().item() * 100
    agree = (logits.argmax(1) == qlogits.argmax(1)).float().mean().item() * 100

    fast_fp32 = torch.jit.optimize_for_inference(torch.jit.script(model))
    one, batch = x_test[:1], x_test[:256]
    with torch.no_grad():
        lat = [(time_ms(lambda: fast_fp32(t)), time_ms(lambda: reloaded(t))) for t in (one, batch)]

    rows = [
        ("test accuracy", f"{acc:.2f} %", f"{qacc:.2f} %"),
        ("predictions unchanged", "", f"{agree:.2f} %"),
        ("logit SQNR vs fp32", "", f"{sqnr_db(logits, qlogits):.1f} dB"),
        ("TorchScript file", f"{fp32_size / 1024:.1f} KiB", f"{int8_size / 1024:.1f} KiB ({fp32_size / int8_size:.2f}x smaller)"),
        ("latency, 1 image", f"{lat[0][0]:.3f} ms", f"{lat[0][1]:.3f} ms ({lat[0][0] / lat[0][1]:.2f}x)"),
        ("latency, 256 images", f"{lat[1][0]:.2f} ms", f"{lat[1][1]:.2f} ms ({lat[1][0] / lat[1][1]:.2f}x)"),
    ]
    print(f"quantized with qconfig '{args.qconfig}', target {args.target}: {int8_ops} int8 kernels, {float_ops} float ops; "
          "saved and reloaded with torch.jit")
    print(f"\n{'':24s}{'fp32':>14s}   int8")
    for name, a, b in rows:
        print(f"{name:24s}{a:>14s}   {b}")
    print("\n(fp32 latency is torch.jit.optimize_for_inference; medians of 20 runs after warm-up, "
          f"{torch.get_num_threads()} thread(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
