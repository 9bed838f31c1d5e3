"""Export of a calibrated model: ONNX with Q/DQ pairs, a TensorRT calibration cache, a JSON of every qparam.

The cache and the JSON also read back into a freshly prepared model, which then needs no calibration:

    prepared = torchquantx.prepare(model)
    torchquantx.calibrate(prepared, loader)
    torchquantx.export_onnx(prepared, "model.onnx", example_inputs)
    torchquantx.write_qparams_json(prepared, "qparams.json")    # every activation and weight qparam
    torchquantx.write_trt_cache(prepared, "model.cache")        # per-tensor ranges, TensorRT's format

    fresh = torchquantx.prepare(model)                          # later, or elsewhere: no calibration
    torchquantx.read_qparams_json(fresh, "qparams.json")        # convert(fresh) == convert(prepared)

What "the same qparams" means for each format, and the numerics of the ONNX graph, are in
docs/user-guide.md ("Export").
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import calibration
from ._files import save_atomic
from ._graph import module_path, qconfig_fields, walk
from .quantize import convert

__all__ = ["export_onnx", "read_qparams_json", "read_trt_cache", "write_qparams_json", "write_trt_cache"]

JSON_FORMAT = "torchquantx-qparams"
JSON_VERSION = 1
TRT_HEADER = "TRT-8601-EntropyCalibration2"
_TRT_HEADER_RE = re.compile(r"^TRT-\d+-[A-Za-z0-9_]+$")
# A cache line: a tensor name (anything without ':' at its end) and the hex bits of a float32 scale.
_TRT_LINE_RE = re.compile(r"^(?P<name>[^\s:][^:]*): (?P<hex>[0-9a-fA-F]{1,8})$")
_QUANTIZED_LAYERS = ("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::linear")
_ONNX_QRANGES = {12: (-128, 127), 13: (0, 255)}  # ScalarType codes of qint8 / quint8 -> ONNX int8 / uint8


# ---- the prepared model's observers --------------------------------------------------------------

@dataclasses.dataclass
class _Observer:
    attr: str            # _tqx_obs_N
    place: str           # what it observes, as torchquantx.summary names it
    tensor: str          # the tensor name in the ONNX graph and the TensorRT cache
    obj: Any             # the torch.classes.quantx observer
    top_level: bool      # called outside every if/loop body

    @property
    def kind(self) -> str:
        return calibration._kind(self.obj)

    def state(self) -> Any:
        """The observer's pickled state (a versioned tuple, custom-class __getstate__)."""
        return self.obj._get_method("__getstate__")()

    def restore(self, state: Any) -> None:
        """Puts the observer back in `state`, in place (a read that fails changes nothing)."""
        self.obj._get_method("__setstate__")(state)

    def config(self) -> Tuple[int, int, bool, float]:
        """(quant_min, quant_max, symmetric, eps): the first settings of every observer's pickled state."""
        settings = self.state()[1]
        return int(settings[0]), int(settings[1]), bool(settings[2]), float(settings[3])


def _observer_attr(node: Any) -> Optional[str]:
    if node.kind() != "prim::CallMethod":
        return None
    owner = node.inputsAt(0).node()
    if owner.kind() == "prim::GetAttr" and owner.s("name").startswith(calibration._OBSERVER_PREFIX):
        return owner.s("name")
    return None


def _tensor_names(places: Sequence[str]) -> List[str]:
    """Names for the observed tensors, valid in ONNX and TensorRT caches: x, layers.0.conv2/conv2d, ..."""
    names: List[str] = []
    seen: Dict[str, int] = {}
    for place in places:
        m = re.fullmatch(r"input '(.+)'", place) or re.fullmatch(r"(.*) \(\w+::(\w+)\)", place)
        name = (m.group(1) if m.lastindex == 1 else f"{m.group(1)}/{m.group(2)}") if m else place
        name = re.sub(r"[^A-Za-z0-9_./-]", "_", name.replace("<top>", "top")) or "tensor"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


def _observers(fn: str, prepared: torch.jit.ScriptModule) -> List[_Observer]:
    """Every activation observer once, in the order of its first call (blocks included)."""
    cpp = calibration._prepared_cpp(fn, prepared)
    top: Dict[str, bool] = {}
    for node, top_level in walk(cpp._get_method("forward").graph):
        attr = _observer_attr(node)
        if attr is not None:
            top[attr] = top.get(attr, False) or top_level
    first: Dict[str, Tuple[str, Any]] = {}
    for attr, place, obj in calibration.observers(prepared):
        first.setdefault(attr, (place, obj))
    attrs = list(first)
    names = _tensor_names([first[a][0] for a in attrs])
    return [_Observer(a, first[a][0], name, first[a][1], top.get(a, True)) for a, name in zip(attrs, names)]


def _status(fn: str, o: _Observer, any_data: bool) -> str:
    """The observer's status: "range", or why it has none: "integer" (it saw only integer tensors:
    convert drops it) or "unreached" (inside a branch no calibration batch entered: stays float)."""
    batches = int(o.obj.batches())
    if batches == 0 and int(o.obj.nonfloat_count()) > 0:
        return "integer"
    if batches == 0 and not o.top_level and any_data:
        return "unreached"
    if batches == 0:
        raise RuntimeError(f"torchquantx.{fn}: observer {o.attr} ({o.place}) has seen no data; run "
                           "torchquantx.calibrate(prepared, data) (or read_qparams_json / read_trt_cache) first")
    if int(o.obj.nonfinite_count()) > 0:
        raise RuntimeError(f"torchquantx.{fn}: calibration produced {int(o.obj.nonfinite_count())} NaN or Inf values "
                           f"at {o.place} ({o.attr}); fix the model or the data, and recalibrate")
    return "range"


def _f32(x: float) -> float:
    return float(np.float32(x))


def _qparams(obj: Any) -> Tuple[float, int]:
    scale, zp = obj.calculate_qparams()
    if scale.numel() != 1:
        raise ValueError(f"torchquantx.export: {calibration._kind(obj)} is per channel ({scale.numel()} scales); "
                         "exported activations are per tensor")
    return float(scale[0]), int(zp[0])


def _qparams_of_range(o: _Observer, lo: float, hi: float) -> Tuple[float, int]:
    qmin, qmax, symmetric, eps = o.config()
    scale, zp = torch.ops.quantx.choose_qparams(torch.tensor([lo]), torch.tensor([hi]), qmin, qmax, symmetric, eps)
    return float(scale[0]), int(zp[0])


def _range(fn: str, o: _Observer) -> Tuple[float, float]:
    """The float32 range the observer's qparams come from (the chosen clipping range for histograms)."""
    if o.kind == "HistogramObserver" and o.obj.method() != "minmax":
        lo, hi = (_f32(v) for v in o.obj.estimate(o.obj.method(), o.obj.percentile())[:2])
    else:
        lo, hi = float(o.obj.min_val()[0]), float(o.obj.max_val()[0])
    if _qparams_of_range(o, lo, hi) != _qparams(o.obj):
        raise RuntimeError(f"torchquantx.{fn}: the qparams of {o.attr} ({o.place}, {o.obj.describe()}) do not follow "
                           f"from its range [{lo!r}, {hi!r}]; please report this as a bug")
    return lo, hi


def _set_range(fn: str, o: _Observer, lo: float, hi: float) -> Tuple[float, int]:
    """Makes the observer hold exactly the range [lo, hi] (as if calibrated on those two values) and
    returns its qparams. Histogram observers switch to "minmax", which turns that range into qparams."""
    if o.kind not in ("HistogramObserver", "MinMaxObserver", "MovingAverageMinMaxObserver"):
        raise ValueError(f"torchquantx.{fn}: observer {o.attr} ({o.place}) is a {o.kind}, which cannot take a "
                         "per-tensor range")
    o.obj.reset()
    if o.kind == "HistogramObserver":
        o.obj.set_method("minmax", float(o.obj.percentile()))
    o.obj.forward(torch.tensor([lo, hi], dtype=torch.float32))
    return _qparams(o.obj)


def _set_status(o: _Observer, status: str) -> None:
    o.obj.reset()
    if status == "integer":  # what calibration leaves: no batch of floats, some integer tensors
        o.obj.forward(torch.zeros(1, dtype=torch.int32))


# ---- weights ------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Weight:
    layer: str           # module path of the conv/linear
    op: str              # aten::conv2d, aten::linear, ...
    bits: int
    per_channel: bool
    symmetric: bool
    scale: torch.Tensor        # float32 [channels] (one value per tensor when not per channel)
    zero_point: torch.Tensor   # int64, as scale
    values: torch.Tensor       # the integers convert quantizes the weight to (int8 container for bits <= 8)
    dequantized: torch.Tensor  # (values - zero_point) * scale: the converted model's float weight


def _layer_name(node: Any) -> str:
    return module_path(node) or "<top>"


def _place(node: Any) -> str:
    return f"{_layer_name(node)} ({node.kind()})"


def _constant_tensor(v: Any) -> Optional[torch.Tensor]:
    node = v.node()
    if node.kind() != "prim::Constant" or not v.type().isSubtypeOf(torch._C.TensorType.get()):
        return None
    return node.t("value")


def _layers(graph: Any) -> List[Any]:
    return [n for n, _ in walk(graph) if n.kind() in _QUANTIZED_LAYERS]


def _weight_qparams(fn: str, node: Any, w: torch.Tensor, converted_w: torch.Tensor,
                    qconfig: Dict[str, str]) -> Optional[_Weight]:
    """The weight's quantization when convert quantized it (converted_w is its fake-quantized self), else None."""
    bits = int(qconfig.get("weight_bits", "8"))
    per_channel = qconfig.get("weight_per_channel", "1") == "1"
    symmetric = qconfig.get("weight_symmetric", "1") == "1"
    fq = torch.ops.quantx.fake_quantize_weight(w, bits, per_channel, symmetric)
    if not torch.equal(fq, converted_w):
        if torch.equal(w, converted_w):
            return None  # convert left this layer float
        raise RuntimeError(f"torchquantx.{fn}: the converted weight of {_place(node)} is not the qconfig's weight "
                           "quantization of the prepared one; please report this as a bug")
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    flat = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    scale, zp = torch.ops.quantx.choose_qparams(flat.amin(1), flat.amax(1), qmin, qmax, symmetric)
    shape = [-1] + [1] * (w.dim() - 1)
    values = torch.clamp(torch.round(w * (1.0 / scale).view(shape)) + zp.view(shape), qmin, qmax)
    if not torch.equal((values - zp.view(shape)).float() * scale.view(shape), fq):
        raise RuntimeError(f"torchquantx.{fn}: could not reproduce the weight quantization of {_place(node)}; "
                           "please report this as a bug")
    return _Weight(_layer_name(node), node.kind(), bits, per_channel, symmetric, scale, zp,
                   values.to(torch.int8 if bits <= 8 else torch.int16), fq)


@dataclasses.dataclass
class _Plan:
    observers: List[_Observer]
    status: Dict[str, str]              # attr -> range / integer / unreached
    reference: torch.jit.ScriptModule   # convert(prepared, "reference"): float ops between Q/DQ pairs
    weights: Dict[int, _Weight]         # index among the reference graph's conv/linear nodes -> weight
    prepared_graph: Any                 # the prepared model's forward graph


def _plan(fn: str, prepared: torch.jit.ScriptModule) -> _Plan:
    cpp = calibration._prepared_cpp(fn, prepared)
    found = _observers(fn, prepared)
    any_data = any(int(o.obj.batches()) > 0 for o in found)
    status = {o.attr: _status(fn, o, any_data) for o in found}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unreached-branch warning: the status says it
        reference = convert(prepared, target="reference")
    qconfig = qconfig_fields(cpp)
    before = _layers(cpp._get_method("forward").graph)
    after = _layers(reference.graph)
    if [n.kind() for n in before] != [n.kind() for n in after]:
        raise RuntimeError(f"torchquantx.{fn}: convert changed the conv/linear layers; please report this as a bug")
    weights: Dict[int, _Weight] = {}
    for i, (b, a) in enumerate(zip(before, after)):
        w, cw = _constant_tensor(b.inputsAt(1)), _constant_tensor(a.inputsAt(1))
        if w is None or cw is None or w.dtype != torch.float32:
            continue
        q = _weight_qparams(fn, a, w, cw, qconfig)
        if q is not None:
            weights[i] = q
    return _Plan(found, status, reference, weights, cpp._get_method("forward").graph)


# ---- files --------------------------------------------------------------------------------------

def _read_text(fn: str, path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"torchquantx.{fn}: cannot read {os.fspath(path)!r}: {e}") from e


# ---- JSON ---------------------------------------------------------------------------------------

def write_qparams_json(prepared: torch.jit.ScriptModule, path: str) -> str:
    """Writes every qparam of a calibrated prepared model to a JSON file and returns `path`.

    Per activation observer: its place, kind, settings, status, the float32 range its qparams come
    from and the qparams (scale, zero point); per quantized conv/linear: bits, per-channel scales and
    zero points. JSON numbers hold the float32 values exactly. read_qparams_json puts the ranges back.
    """
    fn = "write_qparams_json"
    plan = _plan(fn, prepared)
    activations = []
    for o in plan.observers:
        qmin, qmax, symmetric, eps = o.config()
        entry: Dict[str, Any] = {"observer": o.attr, "place": o.place, "tensor": o.tensor, "kind": o.kind,
                                 "quant_min": qmin, "quant_max": qmax, "symmetric": symmetric, "eps": eps,
                                 "status": plan.status[o.attr]}
        if o.kind == "HistogramObserver":
            entry["method"] = o.obj.method()
        if plan.status[o.attr] == "range":
            lo, hi = _range(fn, o)
            scale, zp = _qparams(o.obj)
            entry.update({"range": [lo, hi], "scale": scale, "zero_point": zp})
        activations.append(entry)
    weights = [{"layer": w.layer, "op": w.op, "bits": w.bits, "per_channel": w.per_channel,
                "symmetric": w.symmetric, "scale": [float(s) for s in w.scale],
                "zero_point": [int(z) for z in w.zero_point]} for w in plan.weights.values()]
    doc = {"format": JSON_FORMAT, "version": JSON_VERSION,
           "qconfig": calibration._prepared_cpp(fn, prepared).getattr(calibration._QCONFIG_ATTR),
           "activations": activations, "weights": weights}
    text = json.dumps(doc, indent=1) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return save_atomic(write, path, f"torchquantx.{fn}")


def _field(fn: str, entry: Dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = entry.get(key)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise ValueError(f"torchquantx.{fn}: {where}: '{key}' should be {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value


def read_qparams_json(prepared: torch.jit.ScriptModule, path: str) -> torch.jit.ScriptModule:
    """Sets the observers of a freshly prepared model from write_qparams_json's file; no calibration needed.

    Each observer then holds exactly the stored range, so convert() gives bit-identical qparams (a
    histogram observer's method becomes "minmax" over the range its method had chosen). The file and
    the model must name the same observers at the same places; weights are checked to have the stored
    qparams. Raises ValueError, changing nothing, for an unreadable or malformed file or a mismatch.
    """
    fn = "read_qparams_json"
    text = _read_text(fn, path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"torchquantx.{fn}: {os.fspath(path)!r} is not JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
        raise ValueError(f"torchquantx.{fn}: {os.fspath(path)!r} is not a torchquantx qparams file (no "
                         f"\"format\": \"{JSON_FORMAT}\"); write it with torchquantx.write_qparams_json")
    if doc.get("version") != JSON_VERSION:
        raise ValueError(f"torchquantx.{fn}: {os.fspath(path)!r} has version {doc.get('version')!r}, this torchquantx "
                         f"reads version {JSON_VERSION}")
    entries = doc.get("activations")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"torchquantx.{fn}: {os.fspath(path)!r}: 'activations' should be a list of objects")
    found = {o.attr: o for o in _observers(fn, prepared)}
    by_attr: Dict[str, Dict[str, Any]] = {}
    for i, e in enumerate(entries):
        attr = _field(fn, e, "observer", str, f"activations[{i}]")
        if attr not in found:
            raise ValueError(f"torchquantx.{fn}: the file names observer {attr} ({e.get('place')}), which the model "
                             f"lacks (it has {len(found)} observers); was the file written for another model or "
                             "qconfig?")
        if e.get("place") != found[attr].place:
            raise ValueError(f"torchquantx.{fn}: observer {attr} observes {found[attr].place} in the model but "
                             f"{e.get('place')!r} in the file; was the file written for another model?")
        by_attr[attr] = e
    missing = [f"{a} ({o.place})" for a, o in found.items() if a not in by_attr]
    if missing:
        raise ValueError(f"torchquantx.{fn}: the file has no qparams for observers " + ", ".join(missing))
    plans = []
    for attr, e in by_attr.items():
        where = f"observer {attr} ({found[attr].place})"
        status = e.get("status")
        if status == "range":
            rng = e.get("range")
            if (not isinstance(rng, list) or len(rng) != 2 or
                    not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                            for v in rng) or rng[0] > rng[1]):
                raise ValueError(f"torchquantx.{fn}: {where}: 'range' should be [lo, hi] with finite lo <= hi, "
                                 f"got {rng!r}")
            qp = (_field(fn, e, "scale", float, where), _field(fn, e, "zero_point", int, where))
            plans.append((found[attr], status, (_f32(rng[0]), _f32(rng[1])), qp))
        elif status in ("integer", "unreached"):
            plans.append((found[attr], status, None, None))
        else:
            raise ValueError(f"torchquantx.{fn}: {where}: 'status' should be range, integer or unreached, got "
                             f"{status!r}")
    saved = [(o, o.state()) for o, _, _, _ in plans]
    try:
        for o, status, rng, qp in plans:
            if rng is None:
                _set_status(o, status)
                continue
            got = _set_range(fn, o, *rng)
            if got != qp:
                raise ValueError(f"torchquantx.{fn}: observer {o.attr} ({o.place}): the file's qparams {qp} do not "
                                 f"follow from its range {list(rng)} with this model's observer {o.obj.describe()} "
                                 f"(they give {got}); was the file written for another qconfig?")
        _check_weights(fn, prepared, doc.get("weights"))
    except BaseException:
        for o, state in saved:
            o.restore(state)
        raise
    return prepared


def _check_weights(fn: str, prepared: torch.jit.ScriptModule, stored: Any) -> None:
    if stored is None:
        return
    if not isinstance(stored, list):
        raise ValueError(f"torchquantx.{fn}: 'weights' should be a list, got {type(stored).__name__}")
    have = list(_plan(fn, prepared).weights.values())
    if len(have) != len(stored):
        raise ValueError(f"torchquantx.{fn}: the file has {len(stored)} quantized weights, the model {len(have)}; was "
                         "the file written for another model?")
    for w, e in zip(have, stored):
        if not isinstance(e, dict) or e.get("layer") != w.layer or e.get("scale") != [float(s) for s in w.scale] or \
                e.get("zero_point") != [int(z) for z in w.zero_point]:
            raise ValueError(f"torchquantx.{fn}: the weight qparams of {w.layer} ({w.op}) differ from the file's; was "
                             "the file written for a model with other weights?")


# ---- TensorRT calibration cache -----------------------------------------------------------------

def _trt_scale(amax: float) -> float:
    """TensorRT's per-tensor scale, amax / 127 in float32."""
    return float(np.float32(amax) / np.float32(127.0))


def _trt_amax(scale: float) -> float:
    """A float32 amax whose _trt_scale is `scale` (scale * 127, moved by an ulp where rounding needs it)."""
    amax = np.float32(np.float32(scale) * np.float32(127.0))
    for candidate in (amax, np.nextafter(amax, np.float32(np.inf)), np.nextafter(amax, np.float32(0.0))):
        if _trt_scale(float(candidate)) == scale:
            return float(candidate)
    return float(amax)


def _hex32(x: float) -> str:
    return struct.pack(">f", x).hex()


def write_trt_cache(prepared: torch.jit.ScriptModule, path: str, *, header: str = TRT_HEADER) -> str:
    """Writes the activation ranges of a calibrated prepared model as a TensorRT calibration cache.

    The text format of TensorRT's IInt8Calibrator caches: a header line (`header`, by default
    "TRT-8601-EntropyCalibration2": TensorRT 8.6.1's entropy calibrator; TensorRT ignores a cache
    whose header names another version or calibrator), then `<tensor>: <scale>` per tensor, scale =
    amax / 127 as the big-endian hex of a float32 and amax = max(|lo|, |hi|) of the range the
    observer's qparams come from. Tensor names are those export_onnx gives the observed tensors.
    TensorRT ranges are symmetric, so a read-back model quantizes [-amax, amax] (see read_trt_cache).
    Observers of integer tensors and of never-entered branches have no range and are left out.
    """
    fn = "write_trt_cache"
    if not isinstance(header, str) or not _TRT_HEADER_RE.match(header):
        raise ValueError(f"torchquantx.{fn}: header should look like TRT-8601-EntropyCalibration2, got {header!r}")
    found = _observers(fn, prepared)
    any_data = any(int(o.obj.batches()) > 0 for o in found)
    lines = [header]
    for o in found:
        if _status(fn, o, any_data) != "range":
            continue
        lo, hi = _range(fn, o)
        lines.append(f"{o.tensor}: {_hex32(_trt_scale(max(abs(lo), abs(hi))))}")

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(lines) + "\n")

    return save_atomic(write, path, f"torchquantx.{fn}")


def _parse_trt_cache(fn: str, path: str) -> Dict[str, float]:
    text = _read_text(fn, path)
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines or not _TRT_HEADER_RE.match(lines[0]):
        first = lines[0][:60] if lines else "nothing"
        raise ValueError(f"torchquantx.{fn}: {os.fspath(path)!r} is not a TensorRT calibration cache: its first line "
                         f"should look like TRT-8601-EntropyCalibration2, got {first!r}")
    scales: Dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        m = _TRT_LINE_RE.match(line)
        if not m:
            raise ValueError(f"torchquantx.{fn}: {os.fspath(path)!r} line {number} should be '<tensor>: <8 hex "
                             f"digits>', got {line[:80]!r}")
        name = m.group("name")
        scale = struct.unpack(">f", int(m.group("hex"), 16).to_bytes(4, "big"))[0]
        if not math.isfinite(scale) or scale < 0.0:
            raise ValueError(f"torchquantx.{fn}: {os.fspath(path)!r} line {number}: the scale of {name} should be a "
                             f"finite float >= 0, got {scale!r} ({m.group('hex')})")
        if name in scales:
            raise ValueError(f"torchquantx.{fn}: {os.fspath(path)!r} names tensor {name} twice")
        scales[name] = scale
    return scales


def read_trt_cache(prepared: torch.jit.ScriptModule, path: str) -> torch.jit.ScriptModule:
    """Sets the observers of a freshly prepared model from a TensorRT calibration cache; no calibration needed.

    Each observer named in the cache then holds the symmetric range [-amax, amax], amax the float32
    with amax / 127 == the cache's scale, and convert() quantizes with that range under the
    observer's own settings (for the default quint8 activations: scale 2 * amax / (quant_max -
    quant_min), zero point mid-range). Writing the read-back model again gives the same file.
    Raises ValueError, changing nothing, for an unreadable or malformed cache, one naming tensors
    the model lacks, or one without a tensor the model observes outside if/loop branches (observers
    in branches it lacks stay float, as when calibration never enters them).
    """
    fn = "read_trt_cache"
    scales = _parse_trt_cache(fn, path)
    found = _observers(fn, prepared)
    names = {o.tensor for o in found}
    unknown = [n for n in scales if n not in names]
    if unknown:
        raise ValueError(f"torchquantx.{fn}: the cache names tensors the model does not observe: "
                         f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} (the model's are named like "
                         f"{', '.join(o.tensor for o in found[:3])}); was it written for another model?")
    missing = [f"{o.tensor} ({o.place})" for o in found if o.tensor not in scales and o.top_level]
    if missing:
        raise ValueError(f"torchquantx.{fn}: the cache has no range for " + ", ".join(missing) +
                         "; a TensorRT cache holds float tensors only: for a model that observes integer tensors use "
                         "write_qparams_json / read_qparams_json")
    saved = [(o, o.state()) for o in found]
    try:
        for o in found:
            if o.tensor in scales:
                amax = _trt_amax(scales[o.tensor])
                _set_range(fn, o, -amax, amax)
            else:
                o.obj.reset()
    except BaseException:
        for o, state in saved:
            o.restore(state)
        raise
    return prepared


# ---- ONNX ---------------------------------------------------------------------------------------

_ASSERTION_NODES = {"prim::RaiseException", "prim::Constant", "aten::format", "aten::str", "prim::ListConstruct"}
# prim:: nodes torch.onnx exports (or removes) itself; any other node kind must have an ONNX symbolic.
# Number casts torch.onnx erases (scalars are tensors in ONNX), which have no symbolic of their own.
_NUMBER_CASTS = {"aten::Bool", "aten::Int", "aten::Float", "aten::ScalarImplicit", "aten::FloatImplicit",
                 "aten::IntImplicit"}
_PRIM_EXPORTED = {"prim::Constant", "prim::ListConstruct", "prim::ListUnpack", "prim::TupleConstruct",
                  "prim::TupleUnpack", "prim::If", "prim::Loop", "prim::NumToTensor", "prim::device", "prim::dtype",
                  "prim::shape", "prim::max", "prim::min", "prim::data", "prim::Uninitialized", "prim::unchecked_cast",
                  "prim::Param", "prim::Return"}


def _import_onnx(fn: str) -> Any:
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"torchquantx.{fn} needs the onnx package (Debian: apt-get install python3-onnx; "
                          "elsewhere: pip install onnx)") from e
    return onnx


def _drop_assertions(graph: Any) -> None:
    """Removes shape assertions (an if whose one branch only raises, e.g. adaptive_avg_pool2d's) and
    warnings: the example inputs passed them; ONNX has neither exceptions nor warnings."""
    doomed = []
    for node, _ in walk(graph):
        if node.kind() == "aten::warn":
            doomed.append(node)
        if node.kind() != "prim::If" or node.outputsSize() != 0:
            continue
        kinds = [{n.kind() for n in b.nodes()} for b in node.blocks()]
        if any(not k for k in kinds) and any("prim::RaiseException" in k and k <= _ASSERTION_NODES for k in kinds):
            doomed.append(node)
    for node in doomed:
        node.destroy()
    torch._C._jit_pass_dce(graph)


def _check_exportable(fn: str, graph: Any, opset: int) -> None:
    from torch.onnx._internal import registration
    bad = []
    for node, _ in walk(graph):
        kind = node.kind()
        if kind in _PRIM_EXPORTED or kind in _NUMBER_CASTS:
            continue
        if kind.startswith("prim::") or not registration.registry.is_registered_op(kind, opset):
            layer = _layer_name(node)
            bad.append(f"{kind} in {'the top-level forward' if layer == '<top>' else layer}")
    if bad:
        listed = sorted(set(bad))
        raise ValueError(f"torchquantx.{fn}: ONNX opset {opset} cannot express {', '.join(listed[:8])}"
                         f"{' ...' if len(listed) > 8 else ''}; nothing was written. Keep these layers out of the "
                         "export (e.g. replace them in the model) or export another opset")


def _fake_quantize_activations(fn: str, graph: Any, plan: _Plan) -> List[Tuple[Any, Optional[str]]]:
    """Turns each quantize_per_tensor -> dequantize pair of the reference graph into
    fake_quantize_per_tensor_affine (exported as QuantizeLinear -> DequantizeLinear), and returns
    (the quantized float value, its observer's tensor name) pairs."""
    by_attr = {o.attr: o for o in plan.observers}
    expected = []  # observer calls convert turned into quantize nodes, in graph order
    for node, _ in walk(plan.prepared_graph):
        attr = _observer_attr(node)
        if attr is not None and plan.status[attr] == "range":
            expected.append(by_attr[attr])
    named: set = set()
    out = []
    quantizes = [n for n, _ in walk(graph) if n.kind() == "aten::quantize_per_tensor"]
    k = 0
    for q in quantizes:
        x, scale_v, zp_v, dtype_v = (q.inputsAt(i) for i in range(4))
        scale, zp, dtype = (v.toIValue() if v.node().kind() == "prim::Constant" else None
                            for v in (scale_v, zp_v, dtype_v))
        if dtype not in _ONNX_QRANGES or scale is None or zp is None:
            raise ValueError(f"torchquantx.{fn}: {_layer_name(q)} quantizes to {dtype} (ScalarType code), which ONNX "
                             "QuantizeLinear cannot express (it has int8 and uint8)")
        qmin, qmax = _ONNX_QRANGES[dtype]
        name = None
        if k < len(expected) and _qparams(expected[k].obj) == (float(np.float32(scale)), int(zp)):
            name = expected[k].tensor if expected[k].tensor not in named else None
            named.add(expected[k].tensor)
            k += 1
        with graph.insert_point_guard(q):
            args = [x] + [graph.insertConstant(v) for v in (float(scale), int(zp), qmin, qmax)]
            fq = graph.insert("aten::fake_quantize_per_tensor_affine", args)
        for use in list(q.output().uses()):
            user = use.user
            if user.kind() != "aten::dequantize":
                raise RuntimeError(f"torchquantx.{fn}: a quantized value at {_layer_name(q)} feeds {user.kind()} in "
                                   "the reference model; please report this as a bug")
            user.output().replaceAllUsesWith(fq)
            user.destroy()
        q.destroy()
        out.append((x, name))
    return out


def _graphs(graph: Any) -> Iterator[Any]:
    """An ONNX graph and every subgraph in it (the bodies of If and Loop nodes)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(sub)


def _constants_to_initializers(model: Any) -> None:
    """torch.onnx writes a scripted function's constants as Constant nodes; make them initializers."""
    from onnx import numpy_helper
    for graph in _graphs(model.graph):
        for node in list(graph.node):
            if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
                tensor = numpy_helper.to_array(node.attribute[0].t)
                graph.initializer.append(numpy_helper.from_array(tensor, node.output[0]))
                graph.node.remove(node)


def _quantize_onnx_weights(fn: str, model: Any, plan: _Plan) -> None:
    """Stores each quantized conv/linear weight as its integers behind a DequantizeLinear.

    torch.onnx folds the fake-quantized weights of the reference model into float constants; they
    are found by value (also transposed, where a linear became MatMul) and replaced by int8
    integers, per-channel float32 scales and zero points: exactly convert's weights, checked bit for
    bit (DequantizeLinear computes (q - zero_point) * scale in float32, as Note [Rounding] does)."""
    wanted: Dict[bytes, Tuple[_Weight, np.ndarray, int]] = {}
    for w in plan.weights.values():
        dq = w.dequantized.numpy()
        wanted[dq.tobytes() + str(dq.shape).encode()] = (w, w.values.numpy(), 0)
        if dq.ndim == 2:
            wanted[np.ascontiguousarray(dq.T).tobytes() + str(dq.T.shape).encode()] = (w, w.values.numpy().T, 1)
    bases: set = set()
    found = set()
    for graph in list(_graphs(model.graph)):
        found.update(id(w) for w in _dequantize_weights(fn, graph, wanted, bases))
    missing = [w.layer for w in plan.weights.values() if id(w) not in found]
    if missing:
        raise RuntimeError(f"torchquantx.{fn}: the quantized weights of {', '.join(missing)} were not found in the "
                           "ONNX graph; please report this as a bug")


def _dequantize_weights(fn: str, graph: Any, wanted: Dict[bytes, Tuple[_Weight, np.ndarray, int]],
                        bases: set) -> List[_Weight]:
    """_quantize_onnx_weights in one (sub)graph; returns the weights it found."""
    import onnx
    from onnx import numpy_helper
    done = []
    new_nodes = []
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        match = wanted.get(np.ascontiguousarray(array).tobytes() + str(array.shape).encode())
        if match is None:
            continue
        w, values, axis = match
        scale = w.scale.numpy().astype(np.float32)
        zp = w.zero_point.numpy().astype(np.int8)
        shape = [1] * values.ndim
        if w.per_channel:
            shape[axis] = -1
        if not np.array_equal(((values.astype(np.int32) - zp.reshape(shape)).astype(np.float32)
                               * scale.reshape(shape)).view(np.int32), array.view(np.int32)):
            raise RuntimeError(f"torchquantx.{fn}: the int8 weights of {w.layer} do not dequantize to convert's "
                               "weights; please report this as a bug")
        base = f"{w.layer}.weight" if f"{w.layer}.weight" not in bases else f"{w.layer}.weight_{len(bases)}"
        bases.add(base)
        per_tensor = not w.per_channel
        graph.initializer.extend([
            numpy_helper.from_array(values.astype(np.int8), f"{base}_quantized"),
            numpy_helper.from_array(scale[0] if per_tensor else scale, f"{base}_scale"),
            numpy_helper.from_array(zp[0] if per_tensor else zp, f"{base}_zero_point")])
        attrs = {} if per_tensor else {"axis": axis}
        new_nodes.append(onnx.helper.make_node("DequantizeLinear", [f"{base}_quantized", f"{base}_scale",
                                                                    f"{base}_zero_point"], [init.name],
                                               name=f"{base}_dequantize", **attrs))
        graph.initializer.remove(init)
        done.append(w)
    for i, node in enumerate(new_nodes):
        graph.node.insert(i, node)
    return done


def _debug_name_base(v: Any) -> str:
    return re.sub(r"\.\d+$", "", v.debugName()) or "input"


def export_onnx(prepared: torch.jit.ScriptModule, path: str, example_inputs: Any, *, opset: int = 13) -> str:
    """Writes a calibrated prepared model as ONNX with QuantizeLinear/DequantizeLinear pairs; returns `path`.

    The graph is convert(prepared, target="reference") in ONNX: float operators, each activation
    convert quantizes passing through QuantizeLinear -> DequantizeLinear (uint8 for quint8, per
    tensor), each quantized conv/linear weight stored as int8 integers (per output channel, axis 0,
    when the qconfig says so) behind a DequantizeLinear. Observed tensors get the names
    write_trt_cache uses; the batch dimension is dynamic. The file passes onnx.checker (full check).
    `example_inputs` (a tensor or a tuple) fixes the other input dimensions. opset: 13 or newer.

    A model with operators ONNX cannot express raises ValueError naming them, and nothing is written
    (the file is written to a temporary name and renamed at the end).
    """
    fn = "export_onnx"
    onnx = _import_onnx(fn)
    from torch.onnx import _constants
    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= _constants.ONNX_MAX_OPSET:
        raise ValueError(f"torchquantx.{fn}: opset should be an int in [13, {_constants.ONNX_MAX_OPSET}] (per-channel "
                         f"DequantizeLinear needs 13), got {opset!r}")
    args = tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)
    plan = _plan(fn, prepared)
    wide = sorted({f"{w.bits}-bit" for w in plan.weights.values() if w.bits > 8})
    if wide:
        raise ValueError(f"torchquantx.{fn}: the model has {', '.join(wide)} weights; ONNX opset {opset} "
                         "DequantizeLinear takes 8-bit integers only. Prepare with weight_bits=8 (or 4) to export")
    graph = plan.reference.graph.copy()
    _drop_assertions(graph)
    quantized = _fake_quantize_activations(fn, graph, plan)
    _check_exportable(fn, graph, opset)
    if next(graph.inputs()).uses():
        raise ValueError(f"torchquantx.{fn}: the converted model reads module attributes in forward "
                         f"({', '.join(sorted({u.user.kind() for u in next(graph.inputs()).uses()}))}); ONNX export "
                         "needs a graph of operators on constants")
    graph.eraseInput(0)
    inputs = list(graph.inputs())
    if len(inputs) != len(args):
        raise ValueError(f"torchquantx.{fn}: the model takes {len(inputs)} inputs, example_inputs has {len(args)}")
    input_names = [_debug_name_base(v) for v in inputs]
    for value, name in quantized:
        if name is not None and value.node().kind() != "prim::Param":
            value.setDebugName(name)
    outputs = list(graph.outputs())
    output_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    dynamic = {name: {0: "batch"} for name, a in zip(input_names, args) if isinstance(a, torch.Tensor) and a.dim()}
    dynamic.update({name: {0: "batch"} for name in output_names})
    function = torch._C._create_function_from_graph("forward", graph)

    def write(tmp: str) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.onnx's notes on shape inference of scripted graphs
                torch.onnx.export(function, args, tmp, opset_version=opset, input_names=input_names,
                                  output_names=output_names, dynamic_axes=dynamic, do_constant_folding=True)
        except (torch.onnx.errors.OnnxExporterError, RuntimeError) as e:
            raise ValueError(f"torchquantx.{fn}: torch.onnx could not export the model ({e}); nothing was "
                             "written") from e
        model = onnx.load(tmp)
        _constants_to_initializers(model)
        _quantize_onnx_weights(fn, model, plan)
        model.producer_name = "torchquantx"
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, tmp)

    return save_atomic(write, path, f"torchquantx.{fn}")
