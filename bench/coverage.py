"""Model coverage of torchquantx's graph-mode post-training quantization.

For every torchvision classification model that torch.jit.script accepts (plus custom models:
data-dependent control flow that FX cannot trace, ops outside the op registry in the middle of a
CNN, and a loop appending to a list that is concatenated), runs

    prepare(model, qconfig) -> calibrate(4 batches) -> convert(target)   (--target, default quantx)

and reports per model: status, SQNR of the int8 output against fp32 on a held-out batch, the ops
left in float (from tqx.summary, cross-checked against the converted graph), the int8 / fp32 size
of the saved TorchScript files, and the time taken.

Weights are random (no downloads here). BatchNorm layers get realistic statistics first: momentum
None (cumulative average), 4 random batches in train() mode under no_grad, then eval(). Each model
runs in its own subprocess, so one model crashing, hanging or running out of memory does not stop
the others.

Usage:
    PYTHONPATH=. /usr/bin/python3 bench/coverage.py [--models a,b] [--size 128] [--batch 2]
        [--qconfig x86] [--observer histogram] [--target quantx] [--out bench/results/coverage] [--timeout 900]

Writes <out>.json and <out>.md and prints the markdown table.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from custom_models import ControlFlowNet, LoopListCatNet, PreluGeluLnSoftmaxNet, set_bn_stats
from metrics import sqnr_db

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "results", "coverage")
SEED = 0
BN_BATCHES = 4
CALIB_BATCHES = 4
MAX_PARAMS = 150e6

# Models over MAX_PARAMS, skipped without building them (parameter counts from torchvision 0.14's
# weight metadata; building them takes seconds to minutes and gigabytes for nothing).
KNOWN_LARGE = {
    "convnext_large": 197.8e6,
    "regnet_y_128gf": 644.8e6,
    "vit_h_14": 632.0e6,
    "vit_l_16": 304.3e6,
    "vit_l_32": 306.5e6,
}
# Models whose input size is fixed by construction (position embeddings / partition sizes).
FIXED_SIZE = {"vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224, "vit_h_14": 224,
              "maxvit_t": 224,
              # Its own 299: at 96..191 Mixed_6 runs 1x1 convs on 6x6 maps (see --size).
              "inception_v3": 299}
MIN_SIZE: Dict[str, int] = {}
CUSTOM = ("custom_control_flow", "custom_prelu_gelu_ln_softmax", "custom_loop_list_cat")


# ---------------------------------------------------------------------------------------------
# Model list and construction
# ---------------------------------------------------------------------------------------------
def classification_models() -> List[str]:
    import torchvision
    models = torchvision.models
    if hasattr(models, "list_models"):  # torchvision >= 0.14
        return sorted(models.list_models(module=models))
    skip = {"get_model", "get_model_builder", "get_model_weights", "get_weight", "list_models"}
    return sorted(n for n, f in models.__dict__.items() if callable(f) and n[:1].islower() and n not in skip
                  and not isinstance(f, type))


def build(name: str) -> nn.Module:
    if name == "custom_control_flow":
        return ControlFlowNet()
    if name == "custom_prelu_gelu_ln_softmax":
        return PreluGeluLnSoftmaxNet()
    if name == "custom_loop_list_cat":
        return LoopListCatNet()
    import torchvision
    kwargs: Dict[str, Any] = {}
    if name in ("googlenet", "inception_v3"):
        kwargs = dict(transform_input=False, aux_logits=False, init_weights=True)
    return torchvision.models.__dict__[name](weights=None, **kwargs)


def reinit_zero_linears(model: nn.Module) -> List[str]:
    """ViT zero-initialises its classifier (heads.head), which makes the fp32 logits all zero and
    SQNR meaningless; give such all-zero Linear weights a small random init instead."""
    names = []
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear) and not m.weight.any():
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.normal_(m.bias, std=0.02)
                names.append(name)
    return names


def input_batches(name: str, count: int, batch: int, size: int, gen: torch.Generator) -> List[torch.Tensor]:
    out = []
    for i in range(count):
        x = torch.randn(batch, 3, size, size, generator=gen)
        if name == "custom_control_flow":  # both branches of `if x.sum() > 0` must see data
            x = x + (0.5 if i % 2 == 0 else -0.5)
        out.append(x)
    return out


def main_output(out: Any) -> torch.Tensor:
    """The logits: scripted GoogLeNet / Inception return a named tuple (logits, aux2, aux1)."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"model output should be a tensor or a tuple starting with one, got {type(out).__name__}")


def fx_traceable(model: nn.Module) -> str:
    """'yes' or the first line of torch.fx.symbolic_trace's error (the case graph mode on TorchScript covers)."""
    try:
        torch.fx.symbolic_trace(model)
        return "yes"
    except Exception as e:
        return "no: " + first_line(e)


# ---------------------------------------------------------------------------------------------
# Reading a converted model: the summary and the graph itself
# ---------------------------------------------------------------------------------------------
_SUMMARY_LINE = re.compile(r"^(\S+)\s+(\S+)(?: \+ \S+)?\s+->\s+(.*)$")


def parse_summary(text: str) -> Dict[str, Any]:
    """Counts of summary lines: int8 kernels, int8 same/fixed-qparams ops, float ops by kind."""
    kernels, same, floats, float_weights = 0, 0, collections.Counter(), collections.Counter()
    float_lines = []
    for line in text.splitlines():
        m = _SUMMARY_LINE.match(line.strip())
        if not m:
            continue
        _, op, result = m.groups()
        if op.startswith("quantx::"):
            continue  # a fusion of ops already counted (quantx::conv2d + quantx::add -> conv2d_add)
        if result.startswith(("quantized::", "quantx::")):
            kernels += 1
        elif result.startswith("int8"):
            same += 1
        elif result.startswith("float kernel on int8-rounded weights"):
            float_weights[op] += 1
        elif result.startswith("float"):
            floats[op] += 1
            float_lines.append(line.strip())
    return {"int8_kernels": kernels, "int8_same_qparams": same, "float_ops": sum(floats.values()),
            "float_kinds": dict(floats), "float_weight_ops": dict(float_weights), "float_lines": float_lines}


_IGNORED_NS = ("prim", "quantized", "quantx")
_IGNORED_OPS = {"aten::quantize_per_tensor", "aten::quantize_per_channel", "aten::dequantize", "aten::size",
                "aten::len", "aten::__getitem__", "aten::dim", "aten::Int", "aten::Bool", "aten::Float",
                "aten::ScalarImplicit", "aten::format", "aten::warn", "aten::__isnot__", "aten::__is__"}


def graph_float_ops(module: torch.jit.ScriptModule) -> Dict[str, int]:
    """Ops of the converted graph that compute on float tensors, found from the graph alone.

    A value is int8 when it is the output of quantize_per_tensor or a quantized:: / quantx:: op, or of an aten
    op whose first tensor input is int8 (the ops the native target runs on quantized tensors keep
    them quantized). Every other aten op with a tensor output runs in float. Walks nested blocks
    (prim::If / prim::Loop). This is an independent check of tqx.summary's "-> float" lines.
    """
    quantized = set()
    counts: collections.Counter = collections.Counter()

    def is_tensor(v) -> bool:
        return isinstance(v.type(), torch._C.TensorType)

    def walk(block) -> None:
        for n in block.nodes():
            kind = n.kind()
            for b in n.blocks():
                walk(b)
            outs = list(n.outputs())
            if kind in ("aten::quantize_per_tensor", "aten::quantize_per_channel") or kind.startswith(("quantized::", "quantx::")):
                quantized.update(o for o in outs)
                continue
            if kind == "aten::dequantize" or kind.split("::")[0] in _IGNORED_NS or kind in _IGNORED_OPS:
                continue
            if not outs or not any(is_tensor(o) for o in outs):
                continue
            tensor_inputs = [i for i in n.inputs() if is_tensor(i)]
            if tensor_inputs and tensor_inputs[0] in quantized:
                quantized.update(o for o in outs if is_tensor(o))
                continue
            counts[kind] += 1

    walk(module.graph)
    return dict(counts)


# ---------------------------------------------------------------------------------------------
# One model (runs in a worker subprocess)
# ---------------------------------------------------------------------------------------------
def saved_size(module: torch.jit.ScriptModule) -> int:
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getbuffer().nbytes


def first_line(e: BaseException) -> str:
    """The error's first line; for TorchScript interpreter errors the innermost "XError: ..." line."""
    text = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    inner = [line for line in text if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    if text and text[0].startswith("The following operation failed in the TorchScript interpreter") and inner:
        return inner[-1][:300]
    head = text[0] if text else ""
    if head.endswith(":") and len(text) > 1:  # "... these values:" + a list: show the first entries
        head += " " + "; ".join(text[1:4]) + ("; ..." if len(text) > 4 else "")
    return f"{type(e).__name__}: {head}"[:400]


def fx_compare(model: nn.Module, calib: List[torch.Tensor], x: torch.Tensor) -> Dict[str, Any]:
    """Ours vs PyTorch FX with the same observers on the onednn engine: MinMax activations (full
    8-bit range), per-channel symmetric MinMax weights. Returns the max output difference in units of
    FX's output scale (LSB) and both SQNRs, or the FX error."""
    import copy

    import torchquantx as tqx
    from torch.ao.quantization import (MinMaxObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping,
                                       get_default_qconfig_mapping)
    from torch.ao.quantization.observer import FixedQParamsObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    try:
        from torch.ao.quantization.backend_config import get_onednn_backend_config as backend
    except ImportError:  # torch 1.13: the native (default) backend config is what onednn runs
        from torch.ao.quantization.backend_config import get_native_backend_config as backend
    out: Dict[str, Any] = {}
    prepared = tqx.prepare(model, "onednn", observer="minmax")
    tqx.calibrate(prepared, calib, progress=False)
    ours = tqx.convert(prepared, target="native")  # the same quantized:: kernels as FX
    with torch.no_grad():
        ref, a = main_output(model(x)), main_output(ours(x))
    out["ours_minmax_sqnr_db"] = round(sqnr_db(ref, a), 2)
    qconfig = QConfig(activation=MinMaxObserver.with_args(reduce_range=False),
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    mapping = QConfigMapping().set_global(qconfig)
    for op, qc in get_default_qconfig_mapping("onednn").object_type_qconfigs.items():
        if isinstance(qc.activation(), FixedQParamsObserver):  # FX insists on these for sigmoid & co
            mapping.set_object_type(op, qc)
    try:
        fx_prepared = prepare_fx(copy.deepcopy(model), mapping, (calib[0],), backend_config=backend())
        with torch.no_grad():
            for b in calib:
                fx_prepared(b)
        theirs = convert_fx(fx_prepared)
        with torch.no_grad():
            b = main_output(theirs(x))
    except Exception as e:
        out["fx_error"] = first_line(e)
        return out
    u = torch.unique(b)
    step = (u[1:] - u[:-1]).min().item() if u.numel() > 1 else float("nan")  # FX's output scale
    out["fx_lsb"] = round((a - b).abs().max().item() / step, 3)
    out["fx_sqnr_db"] = round(sqnr_db(ref, b), 2)
    return out


def run_model(name: str, size: int, batch: int, qconfig: str, observer: Optional[str],
              fx: bool = False, target: str = "quantx") -> Dict[str, Any]:
    import torchquantx as tqx

    torch.manual_seed(SEED)
    torch.backends.quantized.engine = "onednn"
    r: Dict[str, Any] = {"model": name, "status": "error", "size": size, "batch": batch}
    t_start = time.perf_counter()
    stage = "build"
    try:
        model = build(name)
        params = sum(p.numel() for p in model.parameters())
        r["params_m"] = round(params / 1e6, 2)
        if params > MAX_PARAMS:
            r["status"] = f"skipped: {params / 1e6:.0f}M parameters > {MAX_PARAMS / 1e6:.0f}M"
            return r
        gen = torch.Generator().manual_seed(SEED)
        reinit = reinit_zero_linears(model)
        if reinit:
            r["reinitialised_zero_linears"] = reinit
        stage = "batchnorm statistics"
        set_bn_stats(model, input_batches(name, BN_BATCHES, batch, size, gen))
        calib = input_batches(name, CALIB_BATCHES, batch, size, gen)
        held_out = input_batches(name, 2, batch, size, gen)  # two: covers both branches of the custom model
        stage = "torch.jit.script"
        try:
            scripted = torch.jit.script(model)
        except Exception as e:
            r["status"] = "skipped: torch.jit.script fails: " + first_line(e)
            return r
        stage = "prepare"
        t = time.perf_counter()
        prepared = tqx.prepare(model, qconfig, observer=observer)
        r["prepare_s"] = round(time.perf_counter() - t, 2)
        stage = "calibrate"
        t = time.perf_counter()
        tqx.calibrate(prepared, calib, progress=False)
        r["calibrate_s"] = round(time.perf_counter() - t, 2)
        stage = "convert"
        t = time.perf_counter()
        qmodel = tqx.convert(prepared, target=target)
        r["convert_s"] = round(time.perf_counter() - t, 2)
        stage = "int8 inference"
        with torch.no_grad():
            refs = [main_output(model(x)) for x in held_out]
            outs = [main_output(qmodel(x)) for x in held_out]
        ref, out = torch.cat(refs), torch.cat(outs)
        if out.shape != ref.shape:
            raise RuntimeError(f"int8 output shape {tuple(out.shape)} != fp32 {tuple(ref.shape)}")
        r["finite"] = bool(torch.isfinite(out).all())
        r["sqnr_db"] = round(sqnr_db(ref, out), 2) if ref.any() else None  # None: fp32 output all zero
        r["top1_agree"] = round((ref.argmax(1) == out.argmax(1)).float().mean().item(), 3)
        stage = "summary"
        text = tqx.summary(qmodel, file=io.StringIO())
        r.update(parse_summary(text))
        graph_floats = graph_float_ops(qmodel)
        r["graph_float_ops"] = sum(graph_floats.values())
        r["graph_float_kinds"] = graph_floats
        stage = "save"
        int8_bytes, fp32_bytes = saved_size(qmodel), saved_size(scripted)
        r["int8_mb"], r["fp32_mb"] = round(int8_bytes / 2**20, 3), round(fp32_bytes / 2**20, 3)
        r["size_ratio"] = round(int8_bytes / fp32_bytes, 4)
        stage = "reload"
        buf = io.BytesIO()
        torch.jit.save(qmodel, buf)
        buf.seek(0)
        reloaded = torch.jit.load(buf)
        with torch.no_grad():
            r["reload_equal"] = bool(torch.equal(main_output(reloaded(held_out[0])), outs[0]))
        if name in CUSTOM:
            r["fx_symbolic_trace"] = fx_traceable(model)
        if fx:
            stage = "FX comparison"
            r.update(fx_compare(model, calib, held_out[0]))
        r["status"] = "ok" if r["finite"] else "ok, non-finite output"
    except Exception as e:
        r["status"] = f"error in {stage}: {first_line(e)}"
        r["traceback"] = traceback.format_exc()[-4000:]
    finally:
        r["time_s"] = round(time.perf_counter() - t_start, 1)
    return r


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def size_for(name: str, size: int) -> int:
    return FIXED_SIZE.get(name, max(size, MIN_SIZE.get(name, 0)))


def run_in_subprocess(name: str, args: argparse.Namespace) -> Dict[str, Any]:
    size = size_for(name, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "result.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--worker-out", path,
               "--size", str(size), "--batch", str(args.batch), "--qconfig", args.qconfig, "--target", args.target]
        if args.observer:
            cmd += ["--observer", args.observer]
        if args.fx:
            cmd += ["--fx"]
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return {"model": name, "size": size, "batch": args.batch, "status": f"error: timed out after {args.timeout} s",
                    "time_s": round(time.perf_counter() - t, 1)}
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()
        why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"model": name, "size": size, "batch": args.batch,
                "status": f"crash ({why}): {tail[-1] if tail else ''}"[:300],
                "stderr_tail": "\n".join(tail[-30:]), "time_s": round(time.perf_counter() - t, 1)}


def fmt_kinds(kinds: Dict[str, int]) -> str:
    return ", ".join(f"{k.split('::')[-1]}×{v}" if v > 1 else k.split("::")[-1]
                     for k, v in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))


# Why known failures fail (matched against the status text).
FAILURE_NOTES = [
    (r"saw no data",
     "torchquantx: observers in branches that never run during calibration make convert refuse the model. "
     "nn.MultiheadAttention's slow path (F.multi_head_attention_forward) is unreachable after freezing (frozen "
     "weights do not require grad, so the fused fast path always runs); Swin's `if sum(shift_size) > 0` mask add "
     "never runs in blocks whose shift is 0. No calibration data can reach them (workaround for ViT: "
     "skip=[the self_attention modules])."),
    (r"running_mean should contain|no tensor arguments to this function",
     "torchquantx: torch.cat over a list mutated by aten::append (DenseNet's dense blocks, a loop appending to a "
     "list) is lowered to quantized::cat over the list's initial elements only; the appended tensors are dropped."),
    (r"negative dimension",
     "PyTorch 1.13 onednn: a grouped quantized conv (336 channels, groups=2, 3x3, 64x64 input) fails on its "
     "second call with the same packed weights; PyTorch FX's int8 model fails identically."),
    (r"crash \(signal",
     "PyTorch 1.13 onednn: quantized 1x1 conv with >= 64 input channels on a 6x6 map corrupts the heap "
     "(reproduced with torch.ops.quantized.conv2d alone and with FX); avoid input sizes that make 6x6 maps."),
]


def short(text: str, limit: int = 180) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def markdown(results: List[Dict[str, Any]], header: str) -> str:
    lines = [header, "",
             "| model | params (M) | input | status | SQNR (dB) | top-1 agree | int8 kernels | float ops "
             "(summary) | float op kinds | float ops (graph) | int8/fp32 size | time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ok = r["status"].startswith("ok")
        def g(key: str, f: str = "{}") -> str:
            return f.format(r[key]) if ok and key in r else ""
        lines.append(" | ".join([
            f"| {r['model']}", str(r.get("params_m", "")), f"{r.get('batch', '')}x3x{r['size']}x{r['size']}",
            short(r["status"]).replace("|", "/"), g("sqnr_db", "{:.1f}") if r.get("sqnr_db") is not None else "", g("top1_agree", "{:.2f}"), g("int8_kernels"),
            g("float_ops"), fmt_kinds(r.get("float_kinds", {})) if ok else "", g("graph_float_ops"),
            g("size_ratio", "{:.3f}"), f"{r.get('time_s', '')} |"]))
    ok = [r for r in results if r["status"].startswith("ok")]
    skipped = [r for r in results if r["status"].startswith("skipped")]
    failed = [r for r in results if not r["status"].startswith(("ok", "skipped"))]
    lines += ["", f"{len(ok)} ok, {len(failed)} failed, {len(skipped)} skipped, of {len(results)} models."]
    fx_rows = [r for r in ok if "fx_lsb" in r or "fx_error" in r]
    if fx_rows:
        lines += ["", "Ours vs PyTorch FX, same observers (onednn engine, MinMax activations, per-channel MinMax "
                  "weights), first held-out batch:", "",
                  "| model | max \\|ours - FX\\| (output LSB) | SQNR ours (dB) | SQNR FX (dB) |", "|---|---|---|---|"]
        for r in fx_rows:
            if "fx_error" in r:
                lines.append(f"| {r['model']} | FX fails: {short(r['fx_error'], 120)} | {r.get('ours_minmax_sqnr_db', '')} | |")
            else:
                lines.append(f"| {r['model']} | {r['fx_lsb']:g} | {r['ours_minmax_sqnr_db']} | {r['fx_sqnr_db']} |")
        lines.append("")
    for pattern, note in FAILURE_NOTES:
        hit = [r["model"] for r in failed if re.search(pattern, r["status"])]
        if hit:
            lines.append(f"- {', '.join(hit)}: {note}")
    reinit = [r["model"] for r in results if r.get("reinitialised_zero_linears")]
    if reinit:
        lines.append(f"- {', '.join(reinit)}: all-zero Linear weights (zero-initialised classifier) were given a "
                     f"random init first, or the fp32 logits are all zero.")
    for r in results:
        if "fx_symbolic_trace" in r:
            lines.append(f"{r['model']}: torch.fx.symbolic_trace: {r['fx_symbolic_trace']}")
    not_equal = [r["model"] for r in ok if not r.get("reload_equal", True)]
    if not_equal:
        lines.append(f"Saved and reloaded int8 model gives different output for: {', '.join(not_equal)}.")
    mismatch = [r["model"] for r in ok if r.get("float_ops") != r.get("graph_float_ops")]
    if mismatch:
        lines.append(f"Summary '-> float' count differs from the ops the converted graph really runs in float "
                     f"for: {', '.join(mismatch)}.")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="comma-separated names (default: all classification models "
                   "and the custom ones); 'custom' selects the custom models")
    p.add_argument("--size", type=int, default=128,
                   help="input height/width (default 128; ViT/MaxViT use 224). Avoid sizes that make 6x6 feature "
                        "maps (96, 192): torch 1.13's onednn quantized 1x1 conv with >= 64 input channels "
                        "corrupts the heap on 6x6 inputs")
    p.add_argument("--batch", type=int, default=2, help="batch size of every batch (default 2)")
    p.add_argument("--qconfig", default="x86", help="x86 (default), fbgemm, onednn or qnnpack")
    p.add_argument("--observer", default=None, help="activation observer: histogram (default) or minmax")
    p.add_argument("--target", default="quantx", choices=["quantx", "native"],
                   help="convert target (default quantx, torchquantx's default)")
    p.add_argument("--fx", action="store_true", help="also compare with PyTorch FX (onednn, MinMax observers on "
                   "both sides): max output difference in LSB")
    p.add_argument("--out", default=DEFAULT_OUT, help="output prefix (writes .json and .md)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per model (default 900)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        r = run_model(args.worker, args.size, args.batch, args.qconfig, args.observer, args.fx, args.target)
        with open(args.worker_out, "w") as f:
            json.dump(r, f)
        return 0

    if args.models:
        names: List[str] = []
        for n in args.models.split(","):
            n = n.strip()
            names.extend(CUSTOM if n == "custom" else [n] if n else [])
    else:
        names = classification_models() + list(CUSTOM)
    import torchvision
    known = set(classification_models()) | set(CUSTOM)
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown model(s): {', '.join(unknown)}")

    import torchquantx as tqx
    header = (f"torchquantx {tqx.__version__} coverage: torch {torch.__version__}, torchvision "
              f"{torchvision.__version__}, qconfig {args.qconfig}, target {args.target}, observer {args.observer or 'default'}, "
              f"random init (seed {SEED}) with BatchNorm statistics from {BN_BATCHES} random batches, "
              f"{CALIB_BATCHES} calibration batches, SQNR on 2 held-out batches, {torch.get_num_threads()} threads, "
              f"{platform.machine()}")
    print(header, flush=True)
    results: List[Dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        if name in KNOWN_LARGE:
            r = {"model": name, "size": size_for(name, args.size), "batch": args.batch,
                 "params_m": round(KNOWN_LARGE[name] / 1e6, 1),
                 "status": f"skipped: {KNOWN_LARGE[name] / 1e6:.0f}M parameters > {MAX_PARAMS / 1e6:.0f}M",
                 "time_s": 0.0}
        else:
            r = run_in_subprocess(name, args)
        results.append(r)
        extra = ""
        if r["status"].startswith("ok"):
            extra = (f"  SQNR {r['sqnr_db']} dB, {r['int8_kernels']} int8 kernels, {r['float_ops']} float ops "
                     f"(graph: {r['graph_float_ops']}), size {r['size_ratio']:.3f}")
        print(f"[{i + 1}/{len(names)}] {name}: {r['status']}{extra} ({r.get('time_s', '?')} s)", flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".json", "w") as f:  # rewritten after every model: partial runs keep results
            json.dump({"header": header, "results": results}, f, indent=1)
    table = markdown(results, header + f"; total {time.perf_counter() - t0:.0f} s")
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    print()
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
