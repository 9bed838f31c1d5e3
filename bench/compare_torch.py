"""Side-by-side timing of torchquantx's numeric core against PyTorch's own ops, in one run.

Every row times ours and torch's on the same tensors, interleaved, and reports medians and the
ratio (torch / ours: > 1 means we are faster). Writes bench/results/compare_torch.{json,md}.
Usage: ./tqx bench   or   PYTHONPATH=. /usr/bin/python3 bench/compare_torch.py [--repeat N] [--threads T]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable, Dict, List

import torch

import torchquantx as tqx

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def interleaved(ours: Callable[[], object], theirs: Callable[[], object], repeat: int) -> Dict[str, float]:
    for _ in range(3):
        ours()
        theirs()
    a: List[float] = []
    b: List[float] = []
    for _ in range(repeat):
        t = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        theirs()
        b.append(time.perf_counter() - t)
    ma, mb = statistics.median(a), statistics.median(b)
    return {"ours_ms": ma * 1e3, "torch_ms": mb * 1e3, "ratio": mb / ma}


def bench_ops(repeat: int) -> List[Dict[str, object]]:
    rows = []
    x = torch.randn(1, 3, 224, 224)
    s, z = 0.02, 128
    rows.append({"case": "quantize_per_tensor 1x3x224x224 f32->u8",
                 **interleaved(lambda: tqx.quantize_per_tensor(x, s, z, torch.quint8),
                               lambda: torch.quantize_per_tensor(x, s, z, torch.quint8), repeat)})
    qt = torch.quantize_per_tensor(x, s, z, torch.quint8)
    q = qt.int_repr()
    rows.append({"case": "dequantize 1x3x224x224 u8->f32",
                 **interleaved(lambda: tqx.dequantize_per_tensor(q, s, z), lambda: qt.dequantize(), repeat)})
    a = torch.randn(16, 64, 56, 56)
    rows.append({"case": "fake_quantize_per_tensor 16x64x56x56",
                 **interleaved(lambda: tqx.fake_quantize_per_tensor(a, s, z, 0, 255),
                               lambda: torch.fake_quantize_per_tensor_affine(a, s, z, 0, 255), repeat)})
    w = torch.randn(256, 256, 3, 3)
    scales = w.abs().amax(dim=(1, 2, 3)) / 127.0
    zps = torch.zeros(256, dtype=torch.int64)
    rows.append({"case": "quantize_per_channel weight 256x256x3x3 -> s8",
                 **interleaved(lambda: tqx.quantize_per_channel(w, scales, zps, 0, torch.qint8),
                               lambda: torch.quantize_per_channel(w, scales.double(), zps, 0, torch.qint8), repeat)})
    return rows


def bench_observers(repeat: int) -> List[Dict[str, object]]:
    rows = []
    batches = [torch.randn(1, 64, 56, 56) * (1 + i % 3) for i in range(8)]  # 200k elements each, ranges grow
    elements = sum(b.numel() for b in batches)

    def run(make):
        def go():
            obs = make()
            for b in batches:
                obs(b)
            obs.calculate_qparams()
        return go

    r = interleaved(run(lambda: tqx.HistogramObserver()), run(lambda: torch.ao.quantization.HistogramObserver()),
                    max(3, repeat // 4))
    r["ours_ns_per_element"] = r["ours_ms"] * 1e6 / elements
    r["torch_ns_per_element"] = r["torch_ms"] * 1e6 / elements
    rows.append({"case": f"HistogramObserver, 8 batches of 1x64x56x56 (+qparams)", **r})
    r = interleaved(run(lambda: tqx.MinMaxObserver()), run(lambda: torch.ao.quantization.MinMaxObserver()), repeat)
    rows.append({"case": "MinMaxObserver, 8 batches of 1x64x56x56", **r})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = p.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    report = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "torchquantx": tqx.__version__, "isa": tqx.active_isa(), "runs": []}
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows = bench_ops(args.repeat) + bench_observers(args.repeat)
        report["runs"].append({"threads": threads, "rows": rows})
    with open(os.path.join(RESULTS, "compare_torch.json"), "w") as f:
        json.dump(report, f, indent=2)
    lines = [f"torchquantx {report['torchquantx']} vs torch {report['torch']}, kernels {report['isa']}; "
             "medians, ratio = torch / ours", "",
             "| threads | case | ours (ms) | torch (ms) | ratio |", "|---|---|---|---|---|"]
    for run in report["runs"]:
        for r in run["rows"]:
            lines.append(f"| {run['threads']} | {r['case']} | {r['ours_ms']:.3f} | {r['torch_ms']:.3f} | "
                         f"{r['ratio']:.1f}x |")
    for run in report["runs"]:
        for r in run["rows"]:
            if "ours_ns_per_element" in r:
                lines.append(f"\nthreads={run['threads']} histogram observation: ours "
                             f"{r['ours_ns_per_element']:.2f} ns/element, torch {r['torch_ns_per_element']:.2f} "
                             f"ns/element")
    text = "\n".join(lines)
    with open(os.path.join(RESULTS, "compare_torch.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
