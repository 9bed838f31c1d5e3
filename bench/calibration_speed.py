"""Cost of one calibration batch: torchquantx's prepared model (histogram observers) against the
fp32 forward of the same model and PyTorch FX's prepare_fx with torch.ao HistogramObserver, in one
run; then, from that one calibration, the model output SQNR of every calibration method.

Per model, the median over --repeat interleaved rounds (after --warmup) of one batch through:

    fp32_eager     the nn.Module itself (the issue's reference: observing should cost <= 1.5x it)
    fp32_script    torch.jit.freeze(torch.jit.script(model)): the graph our prepare starts from
    tqx_histogram  torchquantx.prepare(model) (x86 preset: histogram observers, 7-bit activations)
    tqx_minmax     torchquantx.prepare(model, observer="minmax"): the graph cost without histograms
    fx_histogram   prepare_fx with QConfig(activation=HistogramObserver(reduce_range=True),
                   weight=per-channel min/max): torch.ao's x86 default, same observer placement idea

Observers accumulate across the timed rounds, as in a real calibration. The observers alone, on
one tensor of 2^22 ReLU-like values (median of 7): ns per value of our HistogramObserver,
MinMaxObserver and torch.ao's HistogramObserver, and what ours costs for the values one batch
observes (a share of the end-to-end difference, which the shared machine's noise can hide).

Then, for --methods, the prepared model calibrated above is converted with each method
(torchquantx.set_calibration_method, target native) and compared with fp32 on a held-out batch
(output SQNR, dB), with the time convert took (auto runs all four searches per observer).

Usage: PYTHONPATH=. /usr/bin/python3 bench/calibration_speed.py [--models resnet18,fmnist_cnn]
       [--batch-resnet 8] [--batch-cnn 256] [--threads 1] [--repeat 10] [--warmup 2]
       [--methods minmax,percentile,entropy,mse,auto] [--out bench/results/calibration_speed.json]
Inputs are random (seeded); weights random with BatchNorm statistics from random batches.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchquantx as tqx  # noqa: E402
from custom_models import set_bn_stats  # noqa: E402
from metrics import sqnr_db  # noqa: E402
from torchquantx.demo import SmallCNN  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def build(name: str, batch: int, gen: torch.Generator):
    if name == "resnet18":
        import torchvision
        model = torchvision.models.resnet18(weights=None)
        shape = (batch, 3, 224, 224)
    elif name == "fmnist_cnn":
        model = SmallCNN()
        shape = (batch, 1, 28, 28)
    else:
        raise SystemExit(f"calibration_speed: --models should name resnet18 or fmnist_cnn, got {name!r}")
    batches = [torch.randn(shape, generator=gen) for _ in range(3)]
    set_bn_stats(model, batches)
    return model.eval(), batches


def fx_prepared(model: nn.Module, example: torch.Tensor) -> nn.Module:
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import HistogramObserver, default_per_channel_weight_observer
    from torch.ao.quantization.quantize_fx import prepare_fx
    qconfig = QConfig(activation=HistogramObserver.with_args(reduce_range=True),
                      weight=default_per_channel_weight_observer)
    return prepare_fx(copy.deepcopy(model), QConfigMapping().set_global(qconfig), (example,))


def observed_values(prepared: torch.jit.ScriptModule) -> int:
    """Activation values observed per batch (after exactly one batch has run)."""
    return int(sum(float(obs.histogram()[0].sum()) for _, _, obs in tqx.calibration.observers(prepared)))


def observer_ns_per_value() -> Dict[str, float]:
    from torch.ao.quantization.observer import HistogramObserver
    x = torch.randn(1 << 22, generator=torch.Generator().manual_seed(1)).relu_()
    impls = {
        "tqx_histogram": torch.classes.quantx.HistogramObserver(2048, 0, 127, False, 1.1920928955078125e-07).forward,
        "tqx_minmax": torch.classes.quantx.MinMaxObserver(0, 127, False, 1.1920928955078125e-07).forward,
        "torch_histogram": HistogramObserver(quant_min=0, quant_max=127),
    }
    out = {}
    for name, fn in impls.items():
        fn(x)
        samples = []
        for _ in range(7):
            t = time.perf_counter()
            fn(x)
            samples.append(time.perf_counter() - t)
        out[name] = 1e9 * statistics.median(samples) / x.numel()
    return out


def time_interleaved(fns: Dict[str, Callable[[], object]], repeat: int, warmup: int) -> Dict[str, Dict[str, float]]:
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(repeat):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t)
    return {k: {"median_ms": 1e3 * statistics.median(v), "min_ms": 1e3 * min(v)} for k, v in samples.items()}


def run_model(name: str, batch: int, args: argparse.Namespace) -> Dict[str, object]:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model, batches = build(name, batch, gen)
    x = batches[0]
    with torch.no_grad():
        script = torch.jit.freeze(torch.jit.script(copy.deepcopy(model)))
    ours = tqx.prepare(model)
    minmax = tqx.prepare(model, observer="minmax")
    with torch.no_grad():
        ours(x)
    per_batch = observed_values(ours)
    fx = fx_prepared(model, x)
    fns = {
        "fp32_eager": lambda: model(x),
        "fp32_script": lambda: script(x),
        "tqx_histogram": lambda: ours(x),
        "tqx_minmax": lambda: minmax(x),
        "fx_histogram": lambda: fx(x),
    }
    times = time_interleaved(fns, args.repeat, args.warmup)
    eager = times["fp32_eager"]["median_ms"]
    for t in times.values():
        t["vs_fp32_eager"] = t["median_ms"] / eager
    report: Dict[str, object] = {"input": list(x.shape), "observed_values_per_batch": per_batch, "times": times,
                                 "histogram_ms_per_batch": 1e-6 * per_batch * args.observer_ns["tqx_histogram"]}

    # One calibration, every method: convert and compare with fp32 on a held-out batch.
    tqx.calibrate(ours, batches, progress=False)
    held_out = torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        ref = model(held_out)
    methods: Dict[str, Dict[str, float]] = {}
    for method in args.methods:
        tqx.set_calibration_method(ours, method)
        t = time.perf_counter()
        q = tqx.convert(ours)
        convert_s = time.perf_counter() - t
        with torch.no_grad():
            out = q(held_out)
        methods[method] = {"sqnr_db": sqnr_db(ref, out), "convert_s": convert_s}
    if "auto" in args.methods:
        choices: Dict[str, int] = {}
        for row in tqx.compare_methods(ours, ["auto"]):
            choices[str(row["auto_choice"])] = choices.get(str(row["auto_choice"]), 0) + 1
        methods["auto"]["choices"] = choices  # type: ignore[assignment]
    report["methods"] = methods
    return report


def table(results: Dict[str, Dict[str, object]]) -> str:
    lines = ["| model | input | impl | median ms | x fp32 eager |", "|---|---|---|---:|---:|"]
    for name, r in results.items():
        shape = "x".join(str(d) for d in r["input"])  # type: ignore[index]
        for impl, t in r["times"].items():  # type: ignore[union-attr]
            lines.append(f"| {name} | {shape} | {impl} | {t['median_ms']:.2f} | {t['vs_fp32_eager']:.2f} |")
    lines += ["", "| model | observed values / batch | our histograms' ms / batch (from ns / value) |", "|---|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['observed_values_per_batch']} | {r['histogram_ms_per_batch']:.2f} |")
    lines += ["", "| model | method | output SQNR dB | convert s | auto's choices |", "|---|---|---:|---:|---|"]
    for name, r in results.items():
        for method, m in r["methods"].items():  # type: ignore[union-attr]
            choices = ", ".join(f"{k} {v}" for k, v in sorted(m.get("choices", {}).items()))
            lines.append(f"| {name} | {method} | {m['sqnr_db']:.2f} | {m['convert_s']:.2f} | {choices} |")
    return "\n".join(lines)


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,fmnist_cnn")
    p.add_argument("--batch-resnet", type=int, default=8)
    p.add_argument("--batch-cnn", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", default="minmax,percentile,entropy,mse,auto",
                   type=lambda s: [m for m in s.split(",") if m])
    p.add_argument("--out", default=os.path.join(RESULTS, "calibration_speed.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.observer_ns = observer_ns_per_value()
    results: Dict[str, Dict[str, object]] = {}
    for name in [m for m in args.models.split(",") if m]:
        batch = args.batch_resnet if name == "resnet18" else args.batch_cnn
        print(f"calibration_speed: {name} batch {batch} ...", flush=True)
        results[name] = run_model(name, batch, args)
    text = table(results) + "\n\nobservers alone, ns / value: " + ", ".join(
        f"{k} {v:.2f}" for k, v in args.observer_ns.items())
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = {"observer_ns_per_value": args.observer_ns, "torch": torch.__version__, "torchquantx": tqx.__version__, "threads": args.threads,
            "repeat": args.repeat, "cpu": platform.processor() or platform.machine(), "isa": tqx.active_isa()}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(text + "\n")
    print(f"calibration_speed: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
