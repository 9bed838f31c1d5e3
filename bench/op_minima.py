"""Whole-model kernel time that load on a shared machine disturbs less (issue #4).

For each model, the quantx ops' times over N inferences are taken from the autograd profiler; each
op's minimum over the N runs is kept and the minima are summed. A busy neighbour slows some
iterations of some ops; the per-op minimum leaves most of that out, so two builds run in turn
(separate processes, best of a few runs each) compare more steadily than by median latency. The
profiler adds a fixed cost per op, so the sums are for comparing builds, not latencies.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python3 bench/op_minima.py mobilenet_v2 resnet18
"""
from __future__ import annotations

import argparse

import torch
import torchvision

import torchquantx as tqx


def op_minima_us(name: str, iters: int) -> float:
    """Sum over the quantx ops of one inference of each op's minimum time in µs over `iters` runs."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    prepared = tqx.prepare(model)
    tqx.calibrate(prepared, [torch.randn(2, 3, 224, 224) for _ in range(4)], progress=False)
    quantized = tqx.convert(prepared)
    for _ in range(10):
        quantized(x)
    with torch.autograd.profiler.profile() as prof:
        for _ in range(iters):
            quantized(x)
    events = [e for e in prof.function_events if e.name.startswith("quantx::")]
    per = len(events) // iters
    if per * iters != len(events):
        raise RuntimeError(f"{name}: {len(events)} quantx ops over {iters} runs is not the same number per run")
    return float(sum(min(events[i * per + j].cpu_time_total for i in range(iters)) for j in range(per)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["mobilenet_v2", "resnet18"], help="torchvision model names")
    parser.add_argument("--iters", type=int, default=40, help="inferences profiled per model")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        print(f"{name} {op_minima_us(name, args.iters):.0f} us (sum of per-op minima over {args.iters} runs)")


if __name__ == "__main__":
    main()
