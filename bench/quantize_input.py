"""Time of quantx::quantize_nhwc on a model-sized float input (issue #4).

The op turns the float NCHW input of a quantx model into channels-last quint8; it used to copy the
floats to channels-last first. Prints the best of 5 rounds of --calls calls (thread CPU time, one
intra-op thread) and checks the bytes and strides against PyTorch's quantize_per_tensor.

    PYTHONPATH=. python3 bench/quantize_input.py --shape 1 3 224 224
"""
from __future__ import annotations

import argparse
import time

import torch

import torchquantx  # noqa: F401  (registers torch.ops.quantx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[1, 3, 224, 224], metavar=("N", "C", "H", "W"))
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(*args.shape)
    scale, zero_point = 0.02, 128
    op = torch.ops.quantx.quantize_nhwc
    for _ in range(20):
        y = op(x, scale, zero_point)
    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for _ in range(args.calls):
            y = op(x, scale, zero_point)
        best = min(best, (time.thread_time() - start) / args.calls)
    ref = torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).contiguous(memory_format=torch.channels_last)
    same = torch.equal(y.int_repr(), ref.int_repr()) and y.stride() == ref.stride()
    print(f"quantize_nhwc {list(x.shape)}: {best * 1e6:.1f} us per call; same bytes and strides as PyTorch: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
