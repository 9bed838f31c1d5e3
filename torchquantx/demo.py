"""The main job on built-in data: train a small CNN on Fashion-MNIST, calibrate observers, quantize
weights (int8 per channel) and activations (uint8 per tensor) with torchquantx's operators, and
compare fp32 with int8 accuracy, size and quantization speed.

Until the graph-mode pipeline (prepare/convert) lands, the int8 model here is simulated: every
conv/linear sees its input quantized to uint8 and its weights quantized to int8 and dequantized
again by torchquantx's kernels, which is numerically what an int8 kernel with float output computes.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Dict, List, Tuple

import torch
from torch import nn

from . import observers, ops
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
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
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


def quantizable_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def calibrate(model: nn.Module, x: torch.Tensor, batches: int, batch: int, progress: bool) -> Dict[str, observers.MinMaxObserver]:
    """Observes the input of every conv/linear layer on `batches` batches of calibration data."""
    obs = {name: observers.HistogramObserver() for name, _ in quantizable_layers(model)}
    def observe(name: str):
        def hook(_module: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> None:
            obs[name](inputs[0])
        return hook

    hooks = [m.register_forward_pre_hook(observe(name)) for name, m in quantizable_layers(model)]
    try:
        for i in tqdm(range(batches), desc="calibrate", disable=not progress, unit="batch"):
            model(x[i * batch:(i + 1) * batch])
    finally:
        for h in hooks:
            h.remove()
    return obs


@torch.no_grad()
def simulate_int8(model: nn.Module, act_obs: Dict[str, observers.MinMaxObserver]) -> Tuple[nn.Module, int]:
    """A copy of `model` whose conv/linear layers compute on int8 weights and uint8 inputs.

    Returns the copy and the bytes int8 storage needs (weights + per-channel scales, float bias).
    """
    import copy
    qmodel = copy.deepcopy(model)
    int8_bytes = 0
    for name, m in quantizable_layers(qmodel):
        w_obs = observers.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        w_obs(m.weight)
        scale, zp = w_obs.calculate_qparams()
        qw = ops.quantize_per_channel(m.weight, scale, zp, 0, torch.qint8)
        m.weight.copy_(ops.dequantize_per_channel(qw, scale, zp, 0))
        int8_bytes += qw.numel() + scale.numel() * 4 + (m.bias.numel() * 4 if m.bias is not None else 0)
        a_scale, a_zp = act_obs[name].calculate_qparams()
        s, z = float(a_scale), int(a_zp)
        m.register_forward_pre_hook(
            lambda _m, inp, s=s, z=z: ops.dequantize_per_tensor(ops.quantize_per_tensor(inp[0], s, z, torch.quint8), s, z))
    return qmodel, int8_bytes


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

    act_obs = calibrate(model, x_train, args.calib_batches, 64, progress)
    qmodel, int8_bytes = simulate_int8(model, act_obs)
    fp32_bytes = sum(p.numel() * 4 for _, m in quantizable_layers(model) for p in m.parameters())

    logits = predict(model, x_test)
    qlogits = predict(qmodel, x_test)
    acc = (logits.argmax(1) == y_test).float().mean().item() * 100
    qacc = (qlogits.argmax(1) == y_test).float().mean().item() * 100
    agree = (logits.argmax(1) == qlogits.argmax(1)).float().mean().item() * 100

    scale, zp = act_obs[quantizable_layers(model)[0][0]].calculate_qparams()
    s, z = float(scale), int(zp)
    ours = time_ms(lambda: ops.quantize_per_tensor(x_test, s, z, torch.quint8))
    theirs = time_ms(lambda: torch.quantize_per_tensor(x_test, s, z, torch.quint8))
    same = torch.equal(ops.quantize_per_tensor(x_test, s, z, torch.quint8),
                       torch.quantize_per_tensor(x_test, s, z, torch.quint8).int_repr())

    rows = [
        ("test accuracy", f"{acc:.2f} %", f"{qacc:.2f} %"),
        ("predictions unchanged", "", f"{agree:.2f} %"),
        ("logit SQNR vs fp32", "", f"{sqnr_db(logits, qlogits):.1f} dB"),
        ("conv/linear parameters", f"{fp32_bytes / 1024:.1f} KiB", f"{int8_bytes / 1024:.1f} KiB "
                                                                    f"({fp32_bytes / int8_bytes:.2f}x smaller)"),
    ]
    print(f"\n{'':26s}{'fp32':>14s}   int8 (u8 activations, s8 per-channel weights)")
    for name, a, b in rows:
        print(f"{name:26s}{a:>14s}   {b}")
    print(f"\nquantize the 10000 test images (1x28x28 each) to uint8: torchquantx {ours:.2f} ms, "
          f"torch.quantize_per_tensor {theirs:.2f} ms ({theirs / ours:.1f}x); results identical: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
