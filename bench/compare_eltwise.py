"""The quantx element-wise, pooling and copy operators (#4) against PyTorch's quantized ones, in one run.

Shapes are MobileNet-like NHWC activations (quint8, channels-last). Each row times ours and
torch's on the same tensors, interleaved (bench/compare_torch.py's `interleaved`), median ms and
torch / ours (> 1: ours faster). Usage:
    PYTHONPATH=. /usr/bin/python3 bench/compare_eltwise.py [--repeat N] [--threads T] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_torch import interleaved  # noqa: E402

import torchquantx as tqx  # noqa: E402,F401

ops = torch.ops.quantx


def q(shape: Tuple[int, ...], scale: float = 0.05, zp: int = 128) -> torch.Tensor:
    t = torch.quantize_per_tensor(torch.randn(*shape) * 2, scale, zp, torch.quint8)
    return t.contiguous(memory_format=torch.channels_last) if len(shape) == 4 else t


def cases() -> List[Tuple[str, Callable[[], object], Callable[[], object]]]:
    big, mid, small = q((1, 96, 56, 56)), q((1, 240, 14, 14)), q((1, 960, 7, 7))
    gate = q((1, 240, 1, 1), 1 / 256, 0)
    other = q((1, 96, 56, 56), 0.07, 120)
    a, b = q((1, 64, 28, 28)), q((1, 64, 28, 28), 0.03, 100)
    return [
        ("max_pool2d 3x3/2 1x96x56x56", lambda: ops.max_pool2d(big, [3, 3], [2, 2], [1, 1], [1, 1], False),
         lambda: F.max_pool2d(big, 3, 2, 1)),
        ("avg_pool2d 2x2/2 1x96x56x56", lambda: ops.avg_pool2d(big, [2, 2], [2, 2], [0, 0], False, True, None),
         lambda: F.avg_pool2d(big, 2, 2)),
        ("adaptive_avg_pool2d 1x960x7x7 -> 1", lambda: ops.adaptive_avg_pool2d(small, [1, 1]),
         lambda: F.adaptive_avg_pool2d(small, 1)),
        ("mean [2,3] 1x960x7x7", lambda: ops.mean(small, [2, 3], True), lambda: small.mean([2, 3], keepdim=True)),
        ("mul 1x96x56x56", lambda: ops.mul(big, other, 0.1, 90, False),
         lambda: torch.ops.quantized.mul(big, other, 0.1, 90)),
        ("mul SE gate 1x240x14x14 * 1x240x1x1", lambda: ops.mul(mid, gate, 0.05, 128, False),
         lambda: torch.ops.quantized.mul(mid, gate, 0.05, 128)),
        ("hardswish 1x96x56x56", lambda: ops.hardswish(big, 0.04, 30),
         lambda: torch.ops.quantized.hardswish(big, 0.04, 30)),
        ("hardsigmoid 1x96x56x56", lambda: ops.hardsigmoid(big, 1 / 256, 0), lambda: F.hardsigmoid(big)),
        ("sigmoid 1x96x56x56", lambda: ops.sigmoid(big, 1 / 256, 0), lambda: torch.sigmoid(big)),
        ("cat requantize 2x 1x64x28x28", lambda: ops.cat([a, b], 1, 0.06, 110),
         lambda: torch.ops.quantized.cat([a, b], 1, 0.06, 110)),
        ("cat same qparams 2x 1x64x28x28", lambda: ops.cat([a, a], 1, 0.05, 128),
         lambda: torch.ops.quantized.cat([a, a], 1, 0.05, 128)),
        ("upsample_nearest2d x2 1x64x28x28", lambda: ops.upsample_nearest2d(a, None, [2.0, 2.0]),
         lambda: F.interpolate(a, scale_factor=2.0)),
        ("dequantize 1x96x56x56", lambda: ops.dequantize(big), lambda: big.dequantize()),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON output (default: none)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows: List[Dict[str, object]] = []
    print(f"| op ({args.threads} thread) | quantx ms | torch ms | torch / quantx |\n|---|---|---|---|")
    for name, ours, theirs in cases():
        r = interleaved(ours, theirs, args.repeat)
        rows.append({"op": name, **r})
        print(f"| {name} | {r['ours_ms']:.4f} | {r['torch_ms']:.4f} | {r['ratio']:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
