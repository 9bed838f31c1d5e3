"""Where a quantized model loses accuracy: per-layer error, sensitivity, mixed precision.

    report = torchquantx.analyze(model, loader)        # float vs simulated int8, layer by layer
    print(report.table())                              # SQNR, cosine, weight- vs activation-only error
    report.sensitivity                                 # layers ranked by how much int8 hurts the metric
    qmodel, plan = torchquantx.quantize_to_target(model, loader, metric, max_drop=0.5)

The result types are plain dataclasses so the report writer (torchquantx.report), the CLI and
user code can read them (and build them by hand in tests).
"""
from __future__ import annotations

import contextlib
import io
import itertools
import math
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import torch

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency
    tqdm = None

from . import calibration as _calibration
from ._graph import module_path as _module_path, qconfig_fields as _qconfig_fields, walk
from . import quantize as _quantize


@dataclass
class LayerStats:
    """One activation-quantization point (an observer of the prepared model) and the layer producing it."""
    name: str                       # module path of the producing op, e.g. "layers.0.conv2"; "input 'x'" for inputs
    op: str                         # the producing TorchScript op, e.g. "aten::conv2d"
    observer: str                   # the prepared model's observer attribute, e.g. "_tqx_obs_3"
    sqnr: float                     # dB, float model vs fully simulated int8 model, at this point
    cosine: float                   # cosine similarity of the same two tensors
    weight_only_sqnr: float         # dB, only weights quantized (all activations float)
    activation_only_sqnr: float     # dB, only activations quantized (all weights float)
    local_sqnr: float               # dB, this tensor's own rounding/clipping error alone (float input)
    range: Tuple[float, float]      # float range the chosen qparams represent
    observed: Tuple[float, float]   # min / max seen during calibration
    clipped: float                  # fraction of the analysed values beyond `range` by more than half a step
    histogram: Tuple[List[float], float, float] = field(default_factory=lambda: ([], 0.0, 0.0))  # analysed values: counts, lo, hi


@dataclass
class FloatOp:
    """An op the converted model runs in float, and what its quantize/dequantize boundaries cost."""
    name: str
    op: str
    reason: str
    boundaries: int                 # quantize + dequantize ops around it in the converted model
    boundary_ms: float              # their measured time per batch (ms)


@dataclass
class Sensitivity:
    """How the metric moves when one layer alone is int8, or when one layer alone stays float."""
    name: str
    quantized_alone: float          # metric with only this layer quantized (everything else float)
    float_alone: float              # metric with everything quantized except this layer
    gain: float                     # float_alone - all-int8 metric (how much keeping it float recovers)


@dataclass
class Analysis:
    metric_name: str                # "output SQNR (dB)" or the metric callable's name
    float_metric: float             # the metric of the float model
    int8_metric: float              # the metric of the simulated all-int8 model
    layers: List[LayerStats]
    float_ops: List[FloatOp]
    sensitivity: List[Sensitivity]  # most sensitive first (largest gain first)
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The per-layer table, float ops and sensitivity ranking as text (what `torchquantx analyze` prints)."""
        from .report import format_table  # late: report imports this module
        return format_table(self)


def _fmt(v: float) -> str:
    return "inf" if v == float("inf") else "-inf" if v == float("-inf") else f"{v:.2f}"


# ---------------------------------------------------------------------------------------------
# The probe: a private copy of a calibrated prepared model in which every activation observer and
# every weight that convert quantizes is a tap. A tap passes its tensor through, or fake-quantizes it
# with exactly the qparams / weight rounding convert uses, and can record what flows through it. One
# copy then simulates any mix of float and int8 layers without re-preparing or re-calibrating.

_OBS_PREFIX = "_tqx_obs_"
_WEIGHTED_OPS = ("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::linear")


class _Session:
    """The probe whose taps run now, and whether they record what flows through them."""

    def __init__(self) -> None:
        self.probe: Optional["_Probe"] = None
        self.record: Optional[Dict[int, torch.Tensor]] = None


_SESSION = _Session()
_LIB = torch.library.Library("quantx_probe", "DEF")
_LIB.define("act(Tensor x, int id) -> Tensor")
# The weight tap also takes the layer's input, only so that the graph executor's constant propagation
# cannot fold it (its other inputs are constants) and bake in the first run's weights.
_LIB.define("weight(Tensor w, Tensor x, int id) -> Tensor")


def _act_tap(x: torch.Tensor, tap: int) -> torch.Tensor:
    probe = _SESSION.probe
    if probe is not None and tap in probe.act_q and x.is_floating_point():
        scale, zp, qmin, qmax = probe.act_params[tap]
        y = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
    else:
        y = x.clone()
    if _SESSION.record is not None:
        _SESSION.record[tap] = y
    return y


def _weight_tap(w: torch.Tensor, x: torch.Tensor, tap: int) -> torch.Tensor:
    probe = _SESSION.probe
    return probe.weight_fq[tap] if probe is not None and tap in probe.weight_q else w


_LIB.impl("act", _act_tap, "CPU")
_LIB.impl("weight", _weight_tap, "CPU")


def _split_place(place: str) -> Tuple[str, str]:
    """('layers.0.conv2', 'aten::conv2d') from an observer place 'layers.0.conv2 (aten::conv2d)'."""
    m = re.fullmatch(r"(.*) \(([\w:.]+)\)", place)
    return (m.group(1), m.group(2)) if m else (place, "input" if place.startswith("input") else "")


def _qrange(obj: Any) -> Tuple[int, int]:
    m = re.search(r"quant_min=(-?\d+), quant_max=(-?\d+)", str(obj.describe()))
    if not m:
        raise RuntimeError(f"torchquantx.analyze: cannot read the quantization range of {obj.describe()}")
    return int(m.group(1)), int(m.group(2))


class _Probe:
    """A tap-instrumented copy of a calibrated prepared model (the prepared model is not touched)."""

    def __init__(self, prepared: torch.jit.ScriptModule, int8_weights: Set[str]) -> None:
        buf = io.BytesIO()
        torch.jit.save(prepared, buf)  # a copy with its own types: editing its graph leaves `prepared` alone
        buf.seek(0)
        self.module = torch.jit.load(buf)
        cpp = self.module._c
        fields = _qconfig_fields(cpp)
        bits = int(fields.get("weight_bits", "8"))
        per_channel = fields.get("weight_per_channel", "1") == "1"
        symmetric = fields.get("weight_symmetric", "1") == "1"
        graph = self.module.graph
        # (attribute, place, layer name, op) per observer, id = index; weights: (layer name, op) per id.
        self.acts: List[Tuple[str, str, str, str]] = []
        self.weights: List[Tuple[str, str]] = []
        self.act_params: Dict[int, Tuple[float, int, int, int]] = {}
        self.weight_fq: Dict[int, torch.Tensor] = {}
        self.act_q: Set[int] = set()
        self.weight_q: Set[int] = set()
        places = {name: place for name, place, _ in _calibration.observers(prepared)}
        # A loaded copy has no module hierarchy on its nodes; the original's weighted ops, in the same
        # order, name them.
        layer_names = [_module_path(n) for n, _ in walk(prepared.graph) if n.kind() in _WEIGHTED_OPS]
        weighted = [n for n, _ in walk(graph) if n.kind() in _WEIGHTED_OPS]
        if len(weighted) != len(layer_names):
            raise RuntimeError(f"torchquantx.analyze: the copy of the prepared model has {len(weighted)} conv/linear "
                               f"ops, the original {len(layer_names)}")
        names_of = {id(n): name for n, name in zip(weighted, layer_names)}
        for node, _ in list(walk(graph)):
            if node.kind() == "prim::CallMethod":
                owner = node.inputsAt(0).node()
                if owner.kind() != "prim::GetAttr" or not owner.s("name").startswith(_OBS_PREFIX):
                    continue
                attr = owner.s("name")
                obj = cpp.getattr(attr)
                tap = len(self.acts)
                layer, op = _split_place(places.get(attr, attr))
                self.acts.append((attr, places.get(attr, attr), layer, op))
                if obj.batches() > 0:
                    scale, zp = obj.calculate_qparams()
                    qmin, qmax = _qrange(obj)
                    self.act_params[tap] = (float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]), qmin, qmax)
                self._replace(graph, node, "quantx_probe::act", node.inputsAt(1), tap)
            elif node.kind() in _WEIGHTED_OPS:
                w = node.inputsAt(1)
                if w.node().kind() != "prim::Constant" or not isinstance(w.type(), torch._C.TensorType):
                    continue
                layer = names_of[id(node)]
                if layer not in int8_weights:
                    continue
                tap = len(self.weights)
                self.weights.append((layer, node.kind()))
                weight = w.node().t("value")
                self.weight_fq[tap] = torch.ops.quantx.fake_quantize_weight(
                    weight, bits, per_channel and weight.dim() > 1, symmetric)
                with graph.insert_point_guard(node):
                    idc = graph.insertConstant(tap)
                    new = graph.create("quantx_probe::weight", [w, node.inputsAt(0), idc])
                    graph.insertNode(new)
                new.output().setType(w.type())
                node.replaceInputWith(w, new.output())
        torch._C._jit_pass_dce(graph)

    @staticmethod
    def _replace(graph: Any, node: Any, kind: str, value: Any, key: int) -> None:
        with graph.insert_point_guard(node):
            idc = graph.insertConstant(key)
            new = graph.create(kind, [value, idc])
            graph.insertNode(new)
        new.output().setType(node.output().type())
        node.output().replaceAllUsesWith(new.output())
        node.destroy()

    def configure(self, acts: Iterable[int], weights: Iterable[int]) -> None:
        """Makes the given activation / weight taps (indices into self.acts / self.weights) int8."""
        self.act_q = {i for i in acts if i in self.act_params}
        self.weight_q = set(weights)

    def all_acts(self) -> List[int]:
        return list(range(len(self.acts)))

    def all_weights(self) -> List[int]:
        return list(range(len(self.weights)))

    def run(self, args: Tuple[Any, ...], record: bool = False) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        _SESSION.probe, _SESSION.record = self, ({} if record else None)
        try:
            with torch.no_grad():
                out = self.module(*args)
            taps = _SESSION.record or {}
        finally:
            _SESSION.probe, _SESSION.record = None, None
        return _first_tensor(out), taps


@contextlib.contextmanager
def _steps(total: int, desc: str, unit: str, progress: bool) -> Iterator[Callable[[], None]]:
    """A progress bar over `total` steps (tqdm); yields the function that advances it."""
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress) if tqdm else None
    try:
        yield (lambda: bar.update(1)) if bar is not None else (lambda: None)
    finally:
        if bar is not None:
            bar.close()


def _first_tensor(out: Any) -> torch.Tensor:
    while isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"torchquantx.analyze: the model should return a tensor (or a tuple/list/dict starting with one), "
                        f"got {type(out).__name__}")
    return out


def _db(signal: float, noise: float) -> float:
    if noise <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


class _Acc:
    """Running sums for SQNR and cosine of one tap over many batches."""

    def __init__(self) -> None:
        self.ss = self.nn = self.qq = self.fq = 0.0

    def add(self, f: torch.Tensor, q: torch.Tensor) -> None:
        f, q = f.double(), q.double()
        self.ss += float(f.pow(2).sum())
        self.qq += float(q.pow(2).sum())
        self.fq += float((f * q).sum())
        self.nn += float((f - q).pow(2).sum())

    def sqnr(self) -> float:
        return _db(self.ss, self.nn)

    def cosine(self) -> float:
        d = math.sqrt(self.ss * self.qq)
        return self.fq / d if d > 0 else (1.0 if self.ss == self.qq else 0.0)


def _prepared_and_batches(fn: str, model: Any, data: Iterable[Any], num_batches: Optional[int], qconfig: str,
                          method: Optional[str], skip: Sequence[str], input_fn: Optional[Callable[[Any], Tuple[Any, ...]]],
                          progress: bool, prepare_options: Optional[Dict[str, Any]] = None
                          ) -> Tuple[torch.jit.ScriptModule, List[Tuple[Any, ...]], bool]:
    """(calibrated prepared model, the analysis inputs, whether we prepared it ourselves)."""
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"torchquantx.{fn}: num_batches should be >= 1, got {num_batches}")
    to_inputs = input_fn or _quantize._default_inputs
    try:
        batches = list(data if num_batches is None else itertools.islice(data, num_batches))
    except TypeError as e:
        raise TypeError(f"torchquantx.{fn}: data should be an iterable of batches (a DataLoader, a list of tensors), "
                        f"got {type(data).__name__}") from e
    if not batches:
        raise ValueError(f"torchquantx.{fn}: the data yielded no batches")
    inputs = [to_inputs(b) for b in batches]
    is_prepared = isinstance(model, torch.jit.ScriptModule) and model._c.hasattr("_tqx_qconfig")
    if is_prepared:
        if skip or method is not None or prepare_options:
            raise ValueError(f"torchquantx.{fn}: skip=, method= and prepare options apply when torchquantx prepares the model; "
                             "this model is already prepared (prepare it again with them, or pass the float model)")
        return model, inputs, False
    prepared = _quantize.prepare(model, qconfig, method=method, skip=list(skip), **(prepare_options or {}))
    _quantize.calibrate(prepared, inputs, progress=progress)
    return prepared, inputs, True


def _int8_weight_layers(qmodel: torch.jit.ScriptModule) -> Set[str]:
    """Module paths whose conv / linear the converted model runs in int8 (from its summary)."""
    out: Set[str] = set()
    for line in torch.ops.quantx.summary(qmodel._c).splitlines():
        parts = line.split("  ")
        if len(parts) >= 2 and "->" in parts[1]:
            src, dst = parts[1].split("->", 1)
            if any(op in src for op in _WEIGHTED_OPS) and "float" not in dst:
                out.add(parts[0])
    return out


_QUANT_BOUNDARY = ("aten::quantize_per_tensor", "quantx::quantize_nhwc", "quantx::quantize_per_tensor")
_DEQUANT_BOUNDARY = ("aten::dequantize", "quantx::dequantize")


def _float_ops(qmodel: torch.jit.ScriptModule, inputs: List[Tuple[Any, ...]]) -> List[FloatOp]:
    """Ops the converted model runs in float, with their dequantize/quantize boundaries and measured cost."""
    summary = torch.ops.quantx.summary(qmodel._c).splitlines()
    floats: List[Tuple[str, str, str]] = []
    for line in summary:
        parts = line.split("  ")
        if len(parts) >= 2 and "-> float" in parts[1]:
            op = parts[1].split("->")[0].strip()
            reason = parts[1].split("-> float", 1)[1].strip().strip("()")
            floats.append((parts[0], op, reason))
    if not floats:
        return []
    # Measured time of each boundary op kind (mean per call) over the analysis inputs.
    with torch.no_grad():
        qmodel(*inputs[0])
        with torch.autograd.profiler.profile() as prof:
            for args in inputs:
                qmodel(*args)
    per_call: Dict[str, float] = {}
    for ev in prof.key_averages():
        if ev.key in _DEQUANT_BOUNDARY + _QUANT_BOUNDARY and ev.count:
            per_call[ev.key] = ev.cpu_time_total / ev.count / 1000.0  # ms
    counted: Set[int] = set()
    result: List[FloatOp] = []
    nodes_by_name: Dict[Tuple[str, str], List[Any]] = {}
    for node, _ in walk(qmodel.graph):
        nodes_by_name.setdefault((_module_path(node) or "<top>", node.kind()), []).append(node)
    for name, op, reason in floats:
        n_bound, ms = 0, 0.0
        for node in nodes_by_name.get((name, op), []):
            for v in node.inputs():
                src = v.node()
                if src.kind() in _DEQUANT_BOUNDARY and id(src) not in counted:
                    counted.add(id(src))
                    n_bound += 1
                    ms += per_call.get(src.kind(), 0.0)
            for out in node.outputs():
                for use in out.uses():
                    if use.user.kind() in _QUANT_BOUNDARY and id(use.user) not in counted:
                        counted.add(id(use.user))
                        n_bound += 1
                        ms += per_call.get(use.user.kind(), 0.0)
        result.append(FloatOp(name, op, reason or "float", n_bound, ms))
    return result


class _ProbeModel:
    """The probe under one configuration, callable like the model (what a user metric receives)."""

    def __init__(self, probe: _Probe, acts: Iterable[int], weights: Iterable[int]) -> None:
        self.probe, self.acts, self.weights = probe, list(acts), list(weights)

    def __call__(self, *args: Any) -> Any:
        self.probe.configure(self.acts, self.weights)
        _SESSION.probe = self.probe
        try:
            with torch.no_grad():
                return self.probe.module(*args)
        finally:
            _SESSION.probe = None


def _metric_name(metric: Optional[Callable[..., float]]) -> str:
    return "output SQNR (dB)" if metric is None else getattr(metric, "__name__", type(metric).__name__)


def _call_metric(fn: str, metric: Callable[[Any], float], model: Any, what: str) -> float:
    try:
        value = metric(model)
    except Exception as e:
        raise RuntimeError(f"torchquantx.{fn}: the metric {_metric_name(metric)!r} raised on {what}: "
                           f"{type(e).__name__}: {e}") from e
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"torchquantx.{fn}: the metric should return a number, got {type(value).__name__} "
                        f"on {what}") from e


def _sqnr_of(model: Callable[..., Any], inputs: List[Tuple[Any, ...]], refs: List[torch.Tensor]) -> float:
    acc = _Acc()
    with torch.no_grad():
        for args, ref in zip(inputs, refs):
            acc.add(ref, _first_tensor(model(*args)))
    return acc.sqnr()


class _Units:
    """Layers as units of sensitivity: the activation and weight taps that belong to one module path."""

    def __init__(self, probe: _Probe) -> None:
        self.names: List[str] = []
        self.acts: Dict[str, List[int]] = {}
        self.weights: Dict[str, List[int]] = {}
        for i, (_, _, layer, _) in enumerate(probe.acts):
            if i in probe.act_params:
                self.acts.setdefault(self._name(layer), []).append(i)
        for i, (layer, _) in enumerate(probe.weights):
            self.weights.setdefault(self._name(layer), []).append(i)

    def _name(self, layer: str) -> str:
        if layer not in self.names:
            self.names.append(layer)
        return layer

    def leaves(self) -> List[str]:
        """Units that prepare(skip=[name]) keeps in float alone (no other unit lies inside their module)."""
        return [n for n in self.names if not n.startswith("input")
                and not any(o != n and o.startswith(n + ".") for o in self.names)]


def analyze(model: Any, data: Iterable[Any], *, qconfig: str = "x86", method: Optional[str] = None,
            num_batches: Optional[int] = 4, metric: Optional[Callable[[Any], float]] = None, sensitivity: bool = True,
            input_fn: Optional[Callable[[Any], Tuple[Any, ...]]] = None, progress: bool = True,
            skip: Sequence[str] = (), target: str = "quantx", **prepare_options: Any) -> Analysis:
    """Compares the float model with its int8 version layer by layer, on `data`.

    model: a float nn.Module / ScriptModule in eval mode (prepared and calibrated here on the same
    batches, with qconfig / method / skip as torchquantx.prepare takes them), or a module that
    torchquantx.prepare returned and that is already calibrated (then it is analysed as it is).
    data: batches as torchquantx.calibrate takes them; the first num_batches are used.
    metric: a callable taking a model (call it like the original one) and returning a number, higher
    is better, e.g. accuracy on a validation loader; default: the SQNR of the output on `data`.

    int8 is simulated by fake-quantization with the qparams and weight rounding convert uses, so any
    mix of float and int8 layers can be measured from one calibration; the note list gives the
    converted model's own output SQNR next to the simulation's. Nothing passed in is modified.
    """
    fn = "analyze"
    prepared, inputs, _ = _prepared_and_batches(fn, model, data, num_batches, qconfig, method, skip, input_fn,
                                                progress, prepare_options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qmodel = _quantize.convert(prepared, target)
    probe = _Probe(prepared, _int8_weight_layers(qmodel))
    all_a, all_w = probe.all_acts(), probe.all_weights()
    n_taps = len(probe.acts)
    full, wonly, aonly, local = ([_Acc() for _ in range(n_taps)] for _ in range(4))
    clipped = [[0, 0] for _ in range(n_taps)]
    observed: Dict[int, Tuple[float, float]] = {}
    ranges: Dict[int, Tuple[float, float]] = {}
    cpp = prepared._c
    for i, (attr, _, _, _) in enumerate(probe.acts):
        obj = cpp.getattr(attr)
        if i in probe.act_params:
            scale, zp, qmin, qmax = probe.act_params[i]
            ranges[i] = ((qmin - zp) * scale, (qmax - zp) * scale)
            observed[i] = (float(obj.min_val()), float(obj.max_val()))
    bins = 64
    hists: Dict[int, torch.Tensor] = {}
    hist_lim: Dict[int, Tuple[float, float]] = {}
    for i in ranges:
        lo, hi = min(ranges[i][0], observed[i][0]), max(ranges[i][1], observed[i][1])
        pad = (hi - lo) * 0.02 or 1e-6
        hist_lim[i] = (lo - pad, hi + pad)
        hists[i] = torch.zeros(bins, dtype=torch.float64)
    refs: List[torch.Tensor] = []
    out_acc = _Acc()
    with _steps(len(inputs), "analyze: layers", "batch", progress) as step:
        for args in inputs:
            probe.configure([], [])
            ref, f_taps = probe.run(args, record=True)
            refs.append(ref)
            for i, f in f_taps.items():
                if i in ranges and f.is_floating_point():
                    scale, zp, qmin, qmax = probe.act_params[i]
                    local[i].add(f, torch.fake_quantize_per_tensor_affine(f, scale, zp, qmin, qmax))
                    lo, hi = ranges[i][0] - scale / 2, ranges[i][1] + scale / 2  # beyond rounding: saturated
                    clipped[i][0] += int(((f < lo) | (f > hi)).sum())
                    clipped[i][1] += f.numel()
                    hists[i] += torch.histc(f.double(), bins, *hist_lim[i])
            for accs, acts, weights in ((full, all_a, all_w), (wonly, [], all_w), (aonly, all_a, [])):
                probe.configure(acts, weights)
                out, q_taps = probe.run(args, record=True)
                if accs is full:
                    out_acc.add(ref, out)
                for i, q in q_taps.items():
                    if i in f_taps and q.is_floating_point():
                        accs[i].add(f_taps[i], q)
            step()

    layers: List[LayerStats] = []
    for i, (attr, place, layer, op) in enumerate(probe.acts):
        if i not in ranges or full[i].ss == 0 and full[i].nn == 0:
            continue
        layers.append(LayerStats(
            name=layer, op=op, observer=attr, sqnr=full[i].sqnr(), cosine=full[i].cosine(),
            weight_only_sqnr=wonly[i].sqnr(), activation_only_sqnr=aonly[i].sqnr(), local_sqnr=local[i].sqnr(),
            range=ranges[i], observed=observed[i],
            clipped=clipped[i][0] / clipped[i][1] if clipped[i][1] else 0.0,
            histogram=([float(c) for c in hists[i]], hist_lim[i][0], hist_lim[i][1])))

    def evaluate(acts: Iterable[int], weights: Iterable[int]) -> float:
        pm = _ProbeModel(probe, acts, weights)
        if metric is None:
            return _sqnr_of(pm, inputs, refs)
        return _call_metric(fn, metric, pm, "the simulated model")

    if metric is None:
        float_metric, int8_metric = math.inf, out_acc.sqnr()
    else:
        float_metric, int8_metric = evaluate([], []), evaluate(all_a, all_w)

    ranking: List[Sensitivity] = []
    if sensitivity:
        units = _Units(probe)
        with _steps(len(units.names), "analyze: sensitivity", "layer", progress) as step:
            for name in units.names:
                a, w = units.acts.get(name, []), units.weights.get(name, [])
                alone = evaluate(a, w)
                rest = evaluate([i for i in all_a if i not in a], [i for i in all_w if i not in w])
                ranking.append(Sensitivity(name, alone, rest, rest - int8_metric))
                step()
        ranking.sort(key=lambda s: -s.gain if math.isfinite(s.gain) else -math.inf)

    notes = [f"int8 simulated by fake-quantization with convert's qparams and weight rounding; the simulated "
             f"output SQNR is {out_acc.sqnr():.2f} dB, the converted ({target}) model's is "
             f"{_sqnr_of(qmodel, inputs, refs):.2f} dB on the same {len(inputs)} batches"]
    notes += [str(w.message) for w in caught]
    unreached = [attr for i, (attr, _, _, _) in enumerate(probe.acts) if i not in probe.act_params]
    if unreached:
        notes.append("observers that saw no calibration data (left out): " + ", ".join(unreached))
    return Analysis(metric_name=_metric_name(metric), float_metric=float_metric, int8_metric=int8_metric,
                    layers=layers, float_ops=_float_ops(qmodel, inputs), sensitivity=ranking, notes=notes)


@dataclass
class TargetStep:
    """One layer quantize_to_target kept in float, and what that did."""
    name: str
    gain: float                     # simulated metric gain when this layer alone stays float
    cost_ms: float                  # measured: int8 model with this layer in float minus all-int8 (ms per batch)
    metric: float                   # the converted model's metric after this step


@dataclass
class TargetPlan:
    float_layers: List[str]         # what prepare(skip=...) needs to reproduce the model
    metric_name: str
    target: float                   # the metric value the plan had to reach
    float_metric: float
    int8_metric: float              # all-int8 converted model
    final_metric: float
    met: bool
    ms_fp32: float                  # per batch, median, this run
    ms_int8: float
    ms_final: float
    steps: List[TargetStep] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"{self.metric_name}: float {_fmt(self.float_metric)}, all int8 {_fmt(self.int8_metric)}, "
                 f"target {_fmt(self.target)}, final {_fmt(self.final_metric)} ({'met' if self.met else 'NOT met'})",
                 f"float layers ({len(self.float_layers)}): {', '.join(self.float_layers) or '(none)'}",
                 f"time per batch: fp32 {self.ms_fp32:.3f} ms, all int8 {self.ms_int8:.3f} ms, "
                 f"this plan {self.ms_final:.3f} ms"]
        lines += [f"  step {k + 1}: keep {s.name} in float (gain {_fmt(s.gain)}, cost {s.cost_ms:+.3f} ms) -> "
                  f"{_fmt(s.metric)}" for k, s in enumerate(self.steps)]
        return "\n".join(lines)


def _interleaved_ms(models: Sequence[Callable[..., Any]], args: Tuple[Any, ...], iters: int) -> List[float]:
    """Median ms per call of each model, timed in turns so that load on a shared machine hits all alike."""
    times: List[List[float]] = [[] for _ in models]
    with torch.no_grad():
        for m in models:
            m(*args)
            m(*args)
        for _ in range(max(1, iters)):
            for k, m in enumerate(models):
                t = time.perf_counter()
                m(*args)
                times[k].append(time.perf_counter() - t)
    return [1000.0 * sorted(t)[len(t) // 2] for t in times]


def quantize_to_target(model: Any, data: Iterable[Any], metric: Optional[Callable[[Any], float]] = None, *,
                       max_drop: Optional[float] = None, min_metric: Optional[float] = None, qconfig: str = "x86",
                       method: Optional[str] = None, num_batches: Optional[int] = 4, target: str = "quantx",
                       candidates: int = 12, timing_iters: int = 10, progress: bool = True,
                       input_fn: Optional[Callable[[Any], Tuple[Any, ...]]] = None, **prepare_options: Any
                       ) -> Tuple[torch.jit.ScriptModule, TargetPlan]:
    """Mixed precision: the int8 model that keeps the fewest, most sensitive layers in float so that
    `metric` meets its target, choosing among layers that help about equally the ones whose int8
    speed-up is smallest (measured).

    metric: as torchquantx.analyze takes it (a callable on a model, higher is better); default the
    output SQNR (dB) on `data`. The target is the float model's metric minus max_drop, or min_metric
    (with the default metric only min_metric makes sense: the float model's SQNR is infinite).
    Layers are ranked by simulated sensitivity (analyze), and re-ranked after each step given the
    layers already in float; each step converts the real model (prepare with skip=[...], calibrate on
    `data`, convert) and measures the metric on it. The plan's float layers are then pruned: any whose
    removal still meets the target goes back to int8.
    prepare_options (weight_bits=4, observer=..., ...) go to torchquantx.prepare.
    Returns (int8 ScriptModule, TargetPlan).
    """
    fn = "quantize_to_target"
    if (max_drop is None) == (min_metric is None):
        raise ValueError(f"torchquantx.{fn}: give exactly one of max_drop= or min_metric=, got max_drop={max_drop!r}, "
                         f"min_metric={min_metric!r}")
    if max_drop is not None and metric is None:
        raise ValueError(f"torchquantx.{fn}: max_drop needs a metric (the default output SQNR of the float model is "
                         f"infinite); pass metric=... or min_metric= (dB)")
    if max_drop is not None and max_drop < 0:
        raise ValueError(f"torchquantx.{fn}: max_drop should be >= 0, got {max_drop}")
    if isinstance(model, torch.jit.ScriptModule) and model._c.hasattr("_tqx_qconfig"):
        raise TypeError(f"torchquantx.{fn}: pass the float model (it is prepared again for each plan), not a prepared one")
    prepared, inputs, _ = _prepared_and_batches(fn, model, data, num_batches, qconfig, method, (), input_fn,
                                                progress, prepare_options)
    with torch.no_grad():
        refs = [_first_tensor(model(*args)) for args in inputs]

    def real_metric(qmodel: Any, what: str) -> float:
        if metric is None:
            return _sqnr_of(qmodel, inputs, refs)
        return _call_metric(fn, metric, qmodel, what)

    def build(skip: List[str]) -> torch.jit.ScriptModule:
        p = _quantize.prepare(model, qconfig, method=method, skip=skip, **prepare_options)
        _quantize.calibrate(p, inputs, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _quantize.convert(p, target)

    float_metric = math.inf if metric is None else real_metric(model, "the float model")
    goal = float_metric - max_drop if max_drop is not None else float(min_metric)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q_all = _quantize.convert(prepared, target)
    int8_metric = real_metric(q_all, "the int8 model")
    try:
        fp32_fast = torch.jit.optimize_for_inference(torch.jit.script(model) if not isinstance(
            model, torch.jit.ScriptModule) else model)
    except Exception:  # models that optimize_for_inference cannot take are timed as they are
        fp32_fast = model
    ms_fp32, ms_int8 = _interleaved_ms([fp32_fast, q_all], inputs[0], timing_iters)
    plan = TargetPlan([], _metric_name(metric), goal, float_metric, int8_metric, int8_metric, int8_metric >= goal,
                      ms_fp32, ms_int8, ms_int8)
    if plan.met:
        return q_all, plan

    # Simulated sensitivity of the layers that skip= can keep in float one by one.
    probe = _Probe(prepared, _int8_weight_layers(q_all))
    units = _Units(probe)
    all_a, all_w = probe.all_acts(), probe.all_weights()

    def simulate(acts: Iterable[int], weights: Iterable[int]) -> float:
        pm = _ProbeModel(probe, acts, weights)
        return _sqnr_of(pm, inputs, refs) if metric is None else _call_metric(fn, metric, pm, "the simulated model")

    base = simulate(all_a, all_w)
    leaves = units.leaves()
    gains: Dict[str, float] = {}
    with _steps(len(leaves), f"{fn}: sensitivity", "layer", progress) as step:
        for name in leaves:
            a, w = units.acts.get(name, []), units.weights.get(name, [])
            gains[name] = simulate([i for i in all_a if i not in a], [i for i in all_w if i not in w]) - base
            step()
    ranked = sorted((n for n in leaves if gains[n] > 0), key=lambda n: -gains[n])[:candidates]
    if not ranked:
        ranked = sorted(leaves, key=lambda n: -gains[n])[:candidates]
    # Measured cost of keeping each candidate in float: the real model's time with it skipped.
    costs: Dict[str, float] = {}
    with _steps(len(ranked), f"{fn}: per-layer speed", "layer", progress) as step:
        for name in ranked:
            with_float, all_int8 = _interleaved_ms([build([name]), q_all], inputs[0], timing_iters)
            costs[name] = with_float - all_int8
            step()

    chosen: List[str] = []
    remaining = list(ranked)
    current, q_best = int8_metric, q_all

    def without(names: Sequence[str]) -> Tuple[List[int], List[int]]:
        a = {i for n in names for i in units.acts.get(n, [])}
        w = {i for n in names for i in units.weights.get(n, [])}
        return [i for i in all_a if i not in a], [i for i in all_w if i not in w]

    while remaining and current < goal:
        if chosen:  # gains given the layers already in float (they are not additive)
            here = simulate(*without(chosen))
            for n in remaining:
                gains[n] = simulate(*without(chosen + [n])) - here
        top = max(gains[n] for n in remaining)
        # Among the layers that help nearly as much as the best one, the cheapest to keep in float.
        near = [n for n in remaining if gains[n] >= 0.75 * top] if top > 0 else remaining
        pick = min(near, key=lambda n: costs[n])
        remaining.remove(pick)
        chosen.append(pick)
        q_best = build(chosen)
        current = real_metric(q_best, f"the model with {', '.join(chosen)} in float")
        plan.steps.append(TargetStep(pick, gains[pick], costs[pick], current))
    if current >= goal:
        for name in list(chosen):  # prune: layers the others made unnecessary go back to int8
            trial = [n for n in chosen if n != name]
            q_trial = build(trial)
            value = real_metric(q_trial, f"the model with {', '.join(trial) or 'no layer'} in float")
            if value >= goal:
                chosen, q_best, current = trial, q_trial, value
    plan.float_layers = chosen
    plan.final_metric = current
    plan.met = current >= goal
    plan.ms_fp32, plan.ms_int8, plan.ms_final = _interleaved_ms([fp32_fast, q_all, q_best], inputs[0], timing_iters)
    if not plan.met:
        warnings.warn(f"torchquantx.quantize_to_target: the target {goal:.4g} was not reached with {len(chosen)} "
                      f"layers in float (best {current:.4g}); raise `candidates` or relax the target", stacklevel=2)
    return q_best, plan
