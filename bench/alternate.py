"""Whole-model latency with the implementations timed in turns, in one process (issue #4).

On a machine shared with other jobs, separate-process timings (bench/e2e.py) move by more than the
differences between implementations; here every iteration runs fp32, PyTorch FX int8 (onednn) and
quantx back to back, so load hits all three alike and the ratios of the medians are comparable.
`--clock cpu` times with the thread's CPU time, which leaves out the time the scheduler gives to
other processes (not the slowdown from a busy sibling hardware thread).

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python3 bench/alternate.py resnet18 mobilenet_v2
"""
from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable, Dict, List

import torch
import torchvision
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import torchquantx as tqx


def build(name: str) -> Dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """fp32 (scripted, optimize_for_inference), FX-onednn int8 (traced, frozen) and quantx, calibrated alike."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    calib = [torch.randn(2, 3, 224, 224) for _ in range(4)]
    prepared = tqx.prepare(model)
    tqx.calibrate(prepared, calib, progress=False)
    quantx = tqx.convert(prepared)
    fx_prepared = prepare_fx(model, get_default_qconfig_mapping("onednn"), (x,))
    with torch.no_grad():
        for c in calib:
            fx_prepared(c)
    fx = torch.jit.freeze(torch.jit.trace(convert_fx(fx_prepared), x))
    fp32 = torch.jit.optimize_for_inference(torch.jit.script(model))
    return {"fp32": fp32, "fx_onednn": fx, "quantx": quantx}


def time_in_turns(
    impls: Dict[str, Callable[[torch.Tensor], torch.Tensor]], iters: int, warmup: int, clock: Callable[[], float]
) -> Dict[str, float]:
    """Median milliseconds of each implementation, the implementations alternating per iteration."""
    x = torch.randn(1, 3, 224, 224)
    times: Dict[str, List[float]] = {k: [] for k in impls}
    with torch.no_grad():
        for f in impls.values():
            for _ in range(warmup):
                f(x)
        for _ in range(iters):
            for k, f in impls.items():
                start = clock()
                f(x)
                times[k].append(clock() - start)
    return {k: 1000 * sorted(v)[len(v) // 2] for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["resnet18", "mobilenet_v2"], help="torchvision model names")
    parser.add_argument("--iters", type=int, default=25, help="timed iterations per implementation")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: perf_counter; cpu: the thread's CPU time (1 thread only)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "onednn"
    for name in args.models:
        clock = time.thread_time if args.clock == "cpu" else time.perf_counter
        med = time_in_turns(build(name), args.iters, args.warmup, clock)
        print(name, f"({args.clock})", " ".join(f"{k} {v:.2f}ms" for k, v in med.items()),
              f"| quantx vs FX {med['fx_onednn'] / med['quantx']:.2f}x, vs fp32 {med['fp32'] / med['quantx']:.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
