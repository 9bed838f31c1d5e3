"""End-to-end latency of whole models: fp32 TorchScript, PyTorch FX int8 and torchquantx int8, in one run.

For every model x batch x threads, the median latency of `--iters` timed runs (after `--warmup`
untimed ones) of each implementation:

    fp32        torch.jit.optimize_for_inference(torch.jit.freeze(script or trace)): fp32 at its best
    fx_onednn   torch.ao.quantization.quantize_fx with get_default_qconfig_mapping("onednn"), scripted
                and traced, each frozen, the faster at batch 1 kept; run on the onednn engine
    fx_qnnpack  the same with "qnnpack" (skipped when this PyTorch lacks the engine)
    tqx_native  torchquantx.convert(target="native"): PyTorch's quantized kernels (onednn engine)
    tqx_quantx  torchquantx.convert(target="quantx"): torchquantx's own int8 kernels

FX and torchquantx calibrate on the same batches with the same preset (--qconfig, default onednn:
histogram activation observers, full 8-bit range, per-channel weights). Per implementation it also
reports the output error against the fp32 model on a held-out batch (SQNR, max abs difference,
top-1 agreement), so that a fast but wrong result shows, and the peak resident memory of inference.

How: per model, one build subprocess makes all implementations (random weights with a fixed seed
and BatchNorm statistics from random batches; the Fashion-MNIST CNN of `./tqx demo` is trained
briefly on the real images) and saves them as TorchScript files. Then each (model, implementation)
runs in a fresh subprocess that imports torch (and torchquantx only for tqx_quantx, the one that
needs it), loads its file and times it. Memory, from /proc/self/status of that process: RSS after
the imports, RSS with the model loaded (fp32: frozen and optimized) and ready, and the peak RSS
while running each batch size (the kernel's high-water mark is reset just before); the deltas
peak - loaded (activations, workspaces, caches of inference) and peak - imports (model + inference)
are reported too. A failure in one implementation is recorded as "error: ..." and the run goes on.

Usage:
    ./tqx e2e [options]   or   PYTHONPATH=. /usr/bin/python3 bench/e2e.py [options]
    --models resnet18,mobilenet_v2  --batches 1 16  --threads 1 2  --impls fp32 tqx_quantx
    --iters 20 --warmup 5  --quick (the Fashion-MNIST CNN, 5 iterations: a smoke test)
    --out bench/results/e2e.json (the markdown table goes next to it, .md)

Ratios in the table are speed-ups, the other implementation's median time over ours: > 1 means
ours is faster. Thread scaling is the median time on the fewest threads over the most threads.
"""
from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from metrics import sqnr_db  # bench/ is the script's directory, so it is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "results", "e2e.json")

SEED = 0
FMNIST = "fashion_mnist_cnn"
MODELS = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v2_x1_0", FMNIST)
IMPLS = ("fp32", "fx_onednn", "fx_qnnpack", "tqx_native", "tqx_quantx")
INPUT_SHAPE = {FMNIST: (1, 28, 28)}  # per image; the others take 3x224x224
BN_BATCHES = 2          # random batches for BatchNorm running statistics (torchvision models)
CHECK_BATCH = 8         # held-out images for the accuracy columns
FMNIST_TRAIN_IMAGES = 6000
PROGRESS = "e2e: "      # worker output lines with this prefix are shown by the driver


def input_shape(model: str) -> Tuple[int, ...]:
    return INPUT_SHAPE.get(model, (3, 224, 224))


def engine_of(impl: str, qconfig: str) -> str:
    """The quantized engine an implementation is built and run under. torchquantx packs native
    weights for onednn except with the qnnpack preset (csrc/passes/qconfig.cpp)."""
    if impl == "fx_qnnpack":
        return "qnnpack"
    if impl.startswith("tqx_"):
        return "qnnpack" if qconfig == "qnnpack" else "onednn"
    return "onednn"


def first_line(e: BaseException) -> str:
    """A one-line message; for TorchScript interpreter errors the innermost "XError: ..." line."""
    text = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    inner = [line for line in text if line.split(":")[0].endswith(("Error", "Exception"))]
    head = inner[-1] if inner and text and text[0].startswith("The following operation failed") else (
        text[0] if text else "")
    return f"{type(e).__name__}: {head}"[:300]


def progress(msg: str) -> None:
    print(PROGRESS + msg, flush=True)


def json_float(v: float) -> Any:
    return v if math.isfinite(v) else str(v)


# ---------------------------------------------------------------------------------------------
# Memory of this process, from /proc/self/status (MiB)
# ---------------------------------------------------------------------------------------------
def proc_status() -> Dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024.0
    return out


def median_ms(fn: Any, x: torch.Tensor, warmup: int, runs: int) -> float:
    """Median milliseconds of fn(x) over `runs` calls after `warmup` untimed ones, without autograd."""
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            fn(x)
            samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def release_free_memory() -> None:
    """Collects garbage and hands glibc's free heap pages back, so that "loaded" RSS is what is live."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Models and data (build worker)
# ---------------------------------------------------------------------------------------------
def script_or_trace(model: torch.nn.Module, example: torch.Tensor) -> Tuple[torch.jit.ScriptModule, str]:
    try:
        return torch.jit.script(model).eval(), "script"
    except Exception:
        with torch.no_grad():
            return torch.jit.trace(model, (example,)).eval(), "trace"


def build_model(name: str, calib_batches: int, calib_batch: int, info: Dict[str, Any]
                ) -> Tuple[torch.nn.Module, List[torch.Tensor], torch.Tensor]:
    """The fp32 model (eval), the calibration batches and the held-out check batch."""
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    if name == FMNIST:
        from torchquantx.data import load_fashion_mnist
        from torchquantx.demo import SmallCNN, train
        model = SmallCNN()
        try:
            x_train, y_train = load_fashion_mnist("train")
            x_test, _ = load_fashion_mnist("test")
        except (FileNotFoundError, ValueError) as e:
            info["weights"] = f"random (no Fashion-MNIST: {first_line(e)})"
            x_train = torch.randn(calib_batches * calib_batch, *input_shape(name), generator=gen)
            x_test = torch.randn(CHECK_BATCH, *input_shape(name), generator=gen)
            model.eval()
        else:
            t = time.perf_counter()
            train(model, x_train[:FMNIST_TRAIN_IMAGES], y_train[:FMNIST_TRAIN_IMAGES], 1, 64, False)
            info["weights"] = (f"trained 1 epoch on {FMNIST_TRAIN_IMAGES} Fashion-MNIST images "
                               f"({time.perf_counter() - t:.1f} s); calibration: training images, check: test images")
        calib = [x_train[i * calib_batch:(i + 1) * calib_batch] for i in range(calib_batches)]
        return model.eval(), calib, x_test[:CHECK_BATCH]
    import torchvision
    from custom_models import set_bn_stats
    model = torchvision.models.__dict__[name](weights=None)
    shape = input_shape(name)
    set_bn_stats(model, [torch.randn(8, *shape, generator=gen) for _ in range(BN_BATCHES)])
    info["weights"] = f"random init (seed {SEED}), BatchNorm statistics from {BN_BATCHES} random batches"
    calib = [torch.randn(calib_batch, *shape, generator=gen) for _ in range(calib_batches)]
    return model.eval(), calib, torch.randn(CHECK_BATCH, *shape, generator=gen)


def build_fx(model: torch.nn.Module, engine: str, calib: List[torch.Tensor], stage: List[str]
             ) -> Tuple[torch.jit.ScriptModule, str]:
    import copy

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    stage[0] = "prepare_fx"
    prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping(engine), (calib[0],))
    stage[0] = "FX calibration"
    with torch.no_grad():
        for b in calib:
            prepared(b)
    stage[0] = "convert_fx"
    quantized = convert_fx(prepared)
    # FX at its best: scripting and tracing the converted model can give graphs of different speed
    # (resnet18 on onednn, batch 1: scripted 15.8 ms, traced 7.9 ms in one build), so both are built
    # and frozen and the faster one on a batch-1 input is kept.
    forms: Dict[str, torch.jit.ScriptModule] = {}
    stage[0] = "torch.jit.script of the FX model"
    try:
        forms["script"] = torch.jit.freeze(torch.jit.script(quantized).eval())
    except Exception:
        pass
    stage[0] = "torch.jit.trace of the FX model"
    try:
        with torch.no_grad():
            forms["trace"] = torch.jit.freeze(torch.jit.trace(quantized, (calib[0],)).eval())
    except Exception:
        if not forms:
            raise
    if len(forms) == 1:
        (how, module), = forms.items()
        return module, how
    stage[0] = "timing the scripted and traced FX models"
    x = calib[0][:1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ms = {how: median_ms(module, x, warmup=2, runs=5) for how, module in forms.items()}
    torch.set_num_threads(threads)
    best = min(ms, key=ms.get)
    other = "trace" if best == "script" else "script"
    return forms[best], f"{best} (faster than {other} at batch 1: {ms[best]:.2f} vs {ms[other]:.2f} ms)"


def build_worker(args: argparse.Namespace) -> None:
    """Builds the requested implementations of one model into args.dir: <impl>.pt, check.pt, build.json."""
    import torchquantx as tqx
    name, impls = args.model, args.impls
    report: Dict[str, Any] = {"model": name, "impls": {}}
    t0 = time.perf_counter()
    model, calib, check = build_model(name, args.calib_batches, args.calib_batch, report)
    report["calibration"] = f"{len(calib)} batches of {calib[0].shape[0]}"
    report["setup_s"] = round(time.perf_counter() - t0, 1)
    with torch.no_grad():
        ref = model(check)
    torch.save({"x": check, "ref": ref}, os.path.join(args.dir, "check.pt"))

    def save(impl: str, module: torch.jit.ScriptModule, how: str, start: float, **extra: Any) -> None:
        torch.jit.save(module, os.path.join(args.dir, f"{impl}.pt"))
        report["impls"][impl] = {"status": "ok", "how": how, "build_s": round(time.perf_counter() - start, 1), **extra}
        progress(f"{name}: built {impl} ({how}, {time.perf_counter() - start:.1f} s)")

    for impl in impls:
        if impl.startswith("tqx_"):
            continue
        start = time.perf_counter()
        stage = ["torch.jit script/trace"]
        try:
            if impl == "fp32":
                scripted, how = script_or_trace(model, check[:1])  # frozen and optimized after loading
                save(impl, scripted, how + " (frozen + optimize_for_inference after loading)", start)
            else:
                engine = engine_of(impl, args.qconfig)
                if engine not in torch.backends.quantized.supported_engines:
                    report["impls"][impl] = {"status": f"skipped: this PyTorch has no {engine} engine "
                                                       f"(supported: {torch.backends.quantized.supported_engines})"}
                    progress(f"{name}: {impl} {report['impls'][impl]['status']}")
                    continue
                torch.backends.quantized.engine = engine
                module, how = build_fx(model, engine, calib, stage)
                stage[0] = "torch.jit.save"
                save(impl, module, f"prepare_fx/convert_fx, {how} + freeze", start)
        except Exception as e:
            report["impls"][impl] = {"status": f"error in {stage[0]}: {first_line(e)}",
                                     "traceback": traceback.format_exc()[-3000:]}
            progress(f"{name}: {impl} failed in {stage[0]}: {first_line(e)}")

    targets = [i for i in impls if i.startswith("tqx_")]
    if targets:
        start = time.perf_counter()
        try:
            torch.backends.quantized.engine = engine_of(targets[0], args.qconfig)
            try:
                prepared, how = tqx.prepare(model, args.qconfig), "script"
            except RuntimeError:
                prepared, how = tqx.prepare(model, args.qconfig, example_inputs=(check[:1],)), "trace"
            tqx.calibrate(prepared, calib, progress=False)
            common = time.perf_counter() - start
        except Exception as e:
            for impl in targets:
                report["impls"][impl] = {"status": f"error in torchquantx prepare/calibrate: {first_line(e)}",
                                         "traceback": traceback.format_exc()[-3000:]}
            progress(f"{name}: torchquantx prepare/calibrate failed: {first_line(e)}")
            targets = []
        for impl in targets:
            t = time.perf_counter()
            try:
                qmodel = tqx.convert(prepared, target=impl[len("tqx_"):])
                save(impl, qmodel, f"prepare ({how}, qconfig {args.qconfig}) + convert", t - common)
            except Exception as e:
                report["impls"][impl] = {"status": f"error in convert/save: {first_line(e)}",
                                         "traceback": traceback.format_exc()[-3000:]}
                progress(f"{name}: {impl} failed: {first_line(e)}")
    with open(os.path.join(args.dir, "build.json"), "w") as f:
        json.dump(report, f, indent=2)


# ---------------------------------------------------------------------------------------------
# Timing one implementation (run worker: a fresh process per model x implementation)
# ---------------------------------------------------------------------------------------------
def timing_input(model: str, batch: int) -> torch.Tensor:
    return torch.randn(batch, *input_shape(model), generator=torch.Generator().manual_seed(SEED + 1000 + batch))


def run_worker(args: argparse.Namespace) -> None:
    name, impl = args.model, args.impls[0]
    out: Dict[str, Any] = {"model": name, "impl": impl, "runs": []}
    engine = engine_of(impl, args.qconfig)
    # Packed weights are made for the engine current when the file is loaded: set it first.
    torch.backends.quantized.engine = engine
    if impl == "tqx_quantx":
        import torchquantx  # noqa: F401  (registers the quantx:: ops the model calls)
    out["engine"] = engine
    release_free_memory()
    out["rss_imports_mib"] = round(proc_status()["VmRSS"], 1)
    try:
        module = torch.jit.load(os.path.join(args.dir, f"{impl}.pt"))
    except RuntimeError as e:
        if impl != "tqx_native" or "quantx" not in str(e):
            raise
        importlib.import_module("torchquantx")
        module = torch.jit.load(os.path.join(args.dir, f"{impl}.pt"))
        out["needed_torchquantx"] = True
    module.eval()
    if impl == "fp32":
        module = torch.jit.optimize_for_inference(torch.jit.freeze(module))
    release_free_memory()
    out["rss_loaded_mib"] = round(proc_status()["VmRSS"], 1)

    for batch in args.batches:
        x = timing_input(name, batch)
        peak_ok = reset_peak_rss()
        for threads in args.threads:
            torch.set_num_threads(threads)
            run: Dict[str, Any] = {"batch": batch, "threads": threads}
            if torch.get_num_threads() != threads:
                run["threads_actual"] = torch.get_num_threads()
                progress(f"{name} {impl}: warning: torch.set_num_threads({threads}) left {torch.get_num_threads()}")
            try:
                with torch.no_grad():
                    for _ in range(args.warmup):
                        module(x)
                    samples = []
                    for _ in range(args.iters):
                        t = time.perf_counter()
                        module(x)
                        samples.append(time.perf_counter() - t)
                ms = [s * 1e3 for s in samples]
                run.update(median_ms=statistics.median(ms), min_ms=min(ms), mean_ms=statistics.fmean(ms),
                           iters=len(ms))
                progress(f"{name} {impl} batch {batch} threads {threads}: {run['median_ms']:.3f} ms "
                         f"(median of {len(ms)})")
            except Exception as e:
                run["error"] = first_line(e)
                progress(f"{name} {impl} batch {batch} threads {threads}: error: {first_line(e)}")
            out["runs"].append(run)
        status = proc_status()
        peak = status["VmHWM"] if peak_ok else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        out.setdefault("peak_rss_mib", {})[str(batch)] = round(peak, 1)
        out["peak_rss_method"] = "VmHWM reset before each batch" if peak_ok else "ru_maxrss of the whole process"

    try:
        torch.set_num_threads(max(args.threads))
        check = torch.load(os.path.join(args.dir, "check.pt"))
        with torch.no_grad():
            y = module(check["x"])
        ref = check["ref"]
        out["check"] = {"sqnr_db": json_float(round(sqnr_db(ref, y), 2)),
                        "max_abs_diff": (ref - y).abs().max().item(),
                        "ref_max_abs": ref.abs().max().item(),
                        "top1_agree": (ref.argmax(1) == y.argmax(1)).float().mean().item(),
                        "images": ref.shape[0]}
    except Exception as e:
        out["check"] = {"error": first_line(e)}
    out["process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    with open(os.path.join(args.dir, f"{impl}.run.json"), "w") as f:
        json.dump(out, f, indent=2)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
# glibc hands large freed blocks back to the kernel by thresholds that move with a process's
# allocation history (and its address-space layout), so a model may page-fault on fresh memory every
# inference in one process and never in the next: PyTorch FX's mobilenet_v2 on onednn ran 3.5 ms
# in one process and 15 ms with 580-640 faults per inference in others, the same file. Every
# worker, whatever the implementation, runs with glibc told to keep its memory, so that the columns
# compare the kernels; --glibc-defaults leaves glibc as it is. (torchquantx's own ops take their
# outputs from a pool, Note [Output buffers], and fault little either way.)
GLIBC_KEEP_MEMORY = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}


def spawn(args: argparse.Namespace, worker: str, model: str, impls: Sequence[str], workdir: str) -> Tuple[int, str]:
    """Runs a worker, echoing its progress lines; returns (exit code, tail of its other output)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--dir", workdir, "--models", model,
           "--impls", *impls, "--batches", *map(str, args.batches), "--threads", *map(str, args.threads),
           "--iters", str(args.iters), "--warmup", str(args.warmup), "--qconfig", args.qconfig,
           "--calib-batches", str(args.calib_batches), "--calib-batch", str(args.calib_batch)]
    env = dict(os.environ)
    if not args.glibc_defaults:
        env.update(GLIBC_KEEP_MEMORY)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONWARNINGS"] = "ignore"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    timer = threading.Timer(args.timeout, proc.kill)
    timer.start()
    tail: collections.deque = collections.deque(maxlen=40)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(PROGRESS):
                print("  " + line[len(PROGRESS):].rstrip(), flush=True)
            else:
                tail.append(line.rstrip())
        code = proc.wait()
    finally:
        timer.cancel()
    if code == -9:
        tail.append(f"killed after --timeout {args.timeout} s")
    return code, "\n".join(tail)


def failure(code: int, tail: str) -> str:
    lines = [l for l in tail.splitlines() if l.strip()]
    errors = [l for l in lines if l.split(":")[0].strip().endswith(("Error", "Exception")) or "killed after" in l]
    last = (errors or lines or [f"exit code {code}"])[-1].strip()
    return f"error: worker exited with code {code}: {last}"[:300]


def thread_check() -> Dict[str, Any]:
    """Times a 3x3 conv on 1 thread and on the most threads asked for: does set_num_threads work?"""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.randn(2, 64, 56, 56)
    before = torch.get_num_threads()
    out: Dict[str, Any] = {"default_threads": before}
    for t in (1, 2):
        torch.set_num_threads(t)
        out[f"conv_ms_{t}t"] = round(median_ms(conv, x, warmup=1, runs=5), 3)
    torch.set_num_threads(before)
    out["speedup_2t"] = round(out["conv_ms_1t"] / out["conv_ms_2t"], 2)
    return out


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def short(text: str, n: int = 90) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= n else text[:n - 1] + "…"


def to_markdown(report: Dict[str, Any]) -> str:
    impls, models = report["impls"], report["models"]
    cells: Dict[Tuple[str, str, int, int], Any] = {}  # (model, impl, batch, threads) -> ms or error text
    for (model, impl), r in ((tuple(k.split("/")), v) for k, v in report["results"].items()):
        if r.get("status", "ok") != "ok":
            for b in report["batches"]:
                for t in report["threads"]:
                    cells[(model, impl, b, t)] = r["status"]
            continue
        for run in r["runs"]:
            cells[(model, impl, run["batch"], run["threads"])] = run.get("median_ms", "error: " + run.get("error", "?"))

    def cell(key: Tuple[str, str, int, int]) -> str:
        v = cells.get(key)
        return "—" if v is None else fmt_ms(v) if isinstance(v, float) else short(v)

    def ratio(num: Any, den: Any) -> str:
        return f"{num / den:.2f}×" if isinstance(num, float) and isinstance(den, float) else "—"

    m = report["meta"]
    lines = [f"torchquantx {m['torchquantx']} (kernels {m['isa']}) vs torch {m['torch']}, {m['machine']}, "
             f"{m['cpus']} CPUs; qconfig {report['qconfig']}; median ms of {report['iters']} runs after "
             f"{report['warmup']} warm-up runs; each model x implementation in its own process.",
             f"Thread check (3x3 conv 2x64x56x56): 1 thread {m['thread_check']['conv_ms_1t']} ms, 2 threads "
             f"{m['thread_check']['conv_ms_2t']} ms ({m['thread_check']['speedup_2t']}x); torch's default here: "
             f"{m['thread_check']['default_threads']} thread(s), set per run with torch.set_num_threads.",
             f"Load average at the start / end: {m['loadavg_start']} / {m.get('loadavg_end', '?')}.",
             "glibc malloc in every worker: " + (m.get("glibc") or "defaults") + "."]
    if m["thread_check"]["speedup_2t"] < 1.2:
        lines.append("**Warning: 2 threads were not faster than 1 on the conv above: other processes are using the "
                     "CPUs, so multi-thread figures (and likely the others) are not reliable.**")
    lines += ["", "Latency (ms). Speed-ups = their time / ours (> 1: ours faster).", ""]
    ratios = [("quantx vs fx_onednn", "fx_onednn", "tqx_quantx"), ("quantx vs fp32", "fp32", "tqx_quantx"),
              ("native vs fx_onednn", "fx_onednn", "tqx_native")]
    lines.append("| model | batch | threads | " + " | ".join(impls) + " | " + " | ".join(r[0] for r in ratios) + " |")
    lines.append("|---" * (3 + len(impls) + len(ratios)) + "|")
    for model in models:
        for b in report["batches"]:
            for t in report["threads"]:
                row = [model, str(b), str(t)] + [cell((model, i, b, t)) for i in impls]
                row += [ratio(cells.get((model, base, b, t)), cells.get((model, ours, b, t))) for _, base, ours in ratios]
                lines.append("| " + " | ".join(row) + " |")
    if len(report["threads"]) > 1:
        lo, hi = min(report["threads"]), max(report["threads"])
        lines += ["", f"Thread scaling: time on {lo} thread(s) / time on {hi} threads.", "",
                  "| model | batch | " + " | ".join(impls) + " |", "|---" * (2 + len(impls)) + "|"]
        for model in models:
            for b in report["batches"]:
                lines.append("| " + " | ".join([model, str(b)] + [ratio(cells.get((model, i, b, lo)),
                                                                          cells.get((model, i, b, hi)))
                                                                    for i in impls]) + " |")
    bs = "/".join(f"b{b}" for b in report["batches"])
    lines += ["", f"Accuracy against the fp32 model on {CHECK_BATCH} held-out images, and resident memory (MiB) "
                  "of the timing process: after imports, with the model loaded, peak while running each batch "
                  "size, and that peak minus the loaded / imports-only RSS.", "",
              f"| model | impl | SQNR dB | max abs diff | top-1 agree | RSS imports | RSS loaded | peak {bs} | "
              f"peak − loaded {bs} | peak − imports {bs} | build s |",
              "|---" * 11 + "|"]
    for model in models:
        for impl in impls:
            r = report["results"].get(f"{model}/{impl}")
            if r is None:
                continue
            if r.get("status", "ok") != "ok":
                lines.append(f"| {model} | {impl} | {short(r['status'])} |" + " |" * 8)
                continue
            c = r.get("check", {})
            if "error" in c:
                acc = [short("error: " + c["error"]), "", ""]
            else:
                acc = [str(c["sqnr_db"]), f"{c['max_abs_diff']:.4g} (of {c['ref_max_abs']:.3g})",
                       f"{c['top1_agree'] * 100:.0f} %"]
            peaks = r.get("peak_rss_mib", {})

            def per_batch(f) -> str:
                return " / ".join(f"{f(peaks[str(b)]):.0f}" if str(b) in peaks else "—" for b in report["batches"])
            lines.append("| " + " | ".join([model, impl] + acc + [
                f"{r['rss_imports_mib']:.0f}", f"{r['rss_loaded_mib']:.0f}", per_batch(lambda p: p),
                per_batch(lambda p: p - r["rss_loaded_mib"]), per_batch(lambda p: p - r["rss_imports_mib"]),
                str(r.get("build_s", ""))]) + " |")
    notes = [f"- {model}: {r['weights']}" for model, r in report["builds"].items() if "weights" in r]
    if notes:
        lines += ["", "Weights:"] + notes
    return "\n".join(lines)


def driver(args: argparse.Namespace) -> None:
    import torchquantx as tqx
    out_json = args.out
    out_md = os.path.splitext(out_json)[0] + ".md"
    os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
    tc = thread_check()
    if tc["speedup_2t"] < 1.2:
        print(f"e2e: warning: 2 threads are not faster than 1 on a 3x3 conv ({tc['speedup_2t']}x; load average "
              f"{loadavg()}): other processes are using the CPUs and timings will be unreliable", flush=True)
    print(f"e2e: models {', '.join(args.models)}; impls {', '.join(args.impls)}; batches {args.batches}; "
          f"threads {args.threads}; {args.iters} runs after {args.warmup} warm-up runs", flush=True)
    print(f"e2e: thread check, 3x3 conv: 1 thread {tc['conv_ms_1t']} ms, 2 threads {tc['conv_ms_2t']} ms "
          f"({tc['speedup_2t']}x; torch's default {tc['default_threads']} thread(s))", flush=True)
    report: Dict[str, Any] = {
        "meta": {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                 "torch": torch.__version__, "torchquantx": tqx.__version__, "isa": tqx.active_isa(),
                 "quantized_engines": list(torch.backends.quantized.supported_engines), "thread_check": tc,
                 "date": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg_start": loadavg(),
                 "glibc": None if args.glibc_defaults else " ".join(f"{k}={v}" for k, v in GLIBC_KEEP_MEMORY.items())},
        "models": args.models, "impls": args.impls, "batches": args.batches, "threads": args.threads,
        "iters": args.iters, "warmup": args.warmup, "qconfig": args.qconfig, "builds": {}, "results": {}}

    def write() -> str:
        with open(out_json, "w") as f:
            json.dump(report, f, indent=2)
        text = to_markdown(report)
        with open(out_md, "w") as f:
            f.write(text + "\n")
        return text

    with tempfile.TemporaryDirectory(prefix="tqx_e2e_") as tmp:
        for n, model in enumerate(args.models, 1):
            workdir = os.path.join(tmp, model)
            os.makedirs(workdir)
            print(f"[{n}/{len(args.models)}] {model}: building {', '.join(args.impls)}", flush=True)
            t = time.perf_counter()
            code, tail = spawn(args, "build", model, args.impls, workdir)
            build_path = os.path.join(workdir, "build.json")
            if os.path.exists(build_path):
                with open(build_path) as f:
                    build = json.load(f)
                print(f"  {model}: built in {time.perf_counter() - t:.1f} s", flush=True)
            else:
                build = {"impls": {i: {"status": failure(code, tail)} for i in args.impls}, "output_tail": tail[-3000:]}
                print(f"  {model}: build {failure(code, tail)}", flush=True)
            build.setdefault("impls", {})
            report["builds"][model] = {k: v for k, v in build.items() if k != "impls"}
            for impl in args.impls:
                b = build["impls"].get(impl, {"status": "error: not built (see the build output)"})
                key = f"{model}/{impl}"
                if b.get("status") != "ok":
                    report["results"][key] = {"status": b.get("status", "error"), "traceback": b.get("traceback")}
                    continue
                code, tail = spawn(args, "run", model, [impl], workdir)
                run_path = os.path.join(workdir, f"{impl}.run.json")
                if os.path.exists(run_path):
                    with open(run_path) as f:
                        result = json.load(f)
                    result.update(status="ok", build_s=b.get("build_s"), how=b.get("how"))
                else:
                    result = {"status": failure(code, tail), "output_tail": tail[-3000:]}
                    print(f"  {model} {impl}: {result['status']}", flush=True)
                report["results"][key] = result
            write()
    report["meta"]["loadavg_end"] = loadavg()
    print()
    print(write())
    print(f"\nwrote {out_json} and {out_md}")


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--models", nargs="+", default=None, help=f"comma or space separated (default: {','.join(MODELS)})")
    p.add_argument("--impls", nargs="+", default=None, help=f"subset of {','.join(IMPLS)} (default: all)")
    p.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes (default: 1 16)")
    p.add_argument("--threads", nargs="+", type=int, default=None, help="intra-op thread counts (default: 1 2)")
    p.add_argument("--iters", type=int, default=None, help="timed runs per setting (default 20)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per setting before timing (default 5)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {FMNIST} only, 5 timed runs after 2 warm-up runs (other flags still apply)")
    p.add_argument("--qconfig", default="onednn", choices=["x86", "fbgemm", "onednn", "qnnpack"],
                   help="torchquantx preset (default onednn, the same observers as FX's onednn mapping)")
    p.add_argument("--calib-batches", type=int, default=4, help="calibration batches (default 4)")
    p.add_argument("--calib-batch", type=int, default=8, help="images per calibration batch (default 8)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per worker process before it is killed")
    p.add_argument("--glibc-defaults", action="store_true",
                   help="leave glibc's malloc thresholds as they are (default: every worker runs with "
                        "MALLOC_TRIM_THRESHOLD_=1 GiB and MALLOC_MMAP_THRESHOLD_=32 MiB, so that no column "
                        "pays for page faults on memory glibc handed back)")
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON output; the markdown goes next to it (default %(default)s)")
    p.add_argument("--worker", choices=["build", "run"], help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    def listed(values: Optional[List[str]], default: Sequence[str], allowed: Optional[Sequence[str]], what: str
               ) -> List[str]:
        if values is None:
            return list(default)
        items = [v for value in values for v in value.split(",") if v]
        bad = [v for v in items if allowed is not None and v not in allowed]
        if bad:
            p.error(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed or ())})")
        return items

    args.models = listed(args.models, (FMNIST,) if args.quick else MODELS, MODELS, "model")
    args.impls = listed(args.impls, IMPLS, IMPLS, "implementation")
    args.batches = args.batches or [1, 16]
    args.threads = args.threads or [1, 2]
    args.iters = args.iters if args.iters is not None else 5 if args.quick else 20
    args.warmup = args.warmup if args.warmup is not None else 2 if args.quick else 5
    if args.iters < 1 or args.warmup < 0 or min(args.batches) < 1 or min(args.threads) < 1:
        p.error("--iters, --batches and --threads should be >= 1 and --warmup >= 0")
    if args.worker:
        args.model = args.models[0]
        if args.worker == "build":
            sys.path.insert(0, HERE)  # custom_models
            build_worker(args)
        else:
            run_worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
