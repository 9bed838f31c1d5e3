"""Choosing the calibration (range-setting) method of a prepared model, after calibration.

Histogram observers keep the whole activation histogram, so one calibration pass serves every
method; convert() does not change the prepared model, so one model can be converted several times:

    prepared = torchquantx.prepare(model)
    torchquantx.calibrate(prepared, loader)
    for method in ("minmax", "entropy", "mse"):
        torchquantx.set_calibration_method(prepared, method)
        qmodels[method] = torchquantx.convert(prepared)

The methods, their numerics and their costs are in docs/user-guide.md ("Calibration methods").
"""
from __future__ import annotations

import itertools
import math
import re
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from .observers import METHODS, check_method

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency
    tqdm = None

_OBSERVER_PREFIX = "_tqx_obs_"
_QCONFIG_ATTR = "_tqx_qconfig"


def _prepared_cpp(fn: str, prepared: torch.jit.ScriptModule) -> torch._C.ScriptModule:
    cpp = prepared._c if isinstance(prepared, torch.jit.ScriptModule) else prepared
    if not isinstance(cpp, torch._C.ScriptModule) or not cpp.hasattr(_QCONFIG_ATTR):
        raise TypeError(f"torchquantx.{fn}: pass the module returned by torchquantx.prepare, got "
                        f"{type(prepared).__name__}")
    return cpp


def _observer_calls(graph: torch._C.Graph) -> List[str]:
    """Observer attribute names in graph order (blocks included), as quantx::observer_stats walks."""
    names: List[str] = []

    def walk(block) -> None:
        for node in block.nodes():
            if node.kind() == "prim::CallMethod":
                owner = node.inputsAt(0).node()
                if owner.kind() == "prim::GetAttr" and owner.s("name").startswith(_OBSERVER_PREFIX):
                    names.append(owner.s("name"))
            for sub in node.blocks():
                walk(sub)

    walk(graph)
    return names


def observers(prepared: torch.jit.ScriptModule) -> List[Tuple[str, str, torch.ScriptObject]]:
    """(attribute, observed place, observer object) for every activation observer, in graph order."""
    cpp = _prepared_cpp("observers", prepared)
    names = _observer_calls(cpp._get_method("forward").graph)
    places = list(torch.ops.quantx.observer_stats(cpp)[0])
    if len(places) != len(names):
        places = names
    return [(name, place, cpp.getattr(name)) for name, place in zip(names, places)]


def _kind(obj: torch.ScriptObject) -> str:
    """The observer's class name (every torch.classes.quantx observer's describe() starts with it)."""
    return str(obj.describe()).split("(", 1)[0]


def _histogram_observers(fn: str, prepared: torch.jit.ScriptModule) -> List[Tuple[str, str, torch.ScriptObject]]:
    found = observers(prepared)
    if not found:
        raise ValueError(f"torchquantx.{fn}: the prepared model has no activation observers (nothing is quantized "
                         "statically); there is no calibration method to choose")
    others = sorted({_kind(obj) for _, _, obj in found if _kind(obj) != "HistogramObserver"})
    if others:
        raise ValueError(f"torchquantx.{fn}: the model's activation observers are {', '.join(others)}, which only "
                         "track min/max; prepare it with observer='histogram' (the default) to choose the "
                         "calibration method after calibration")
    return found


def _with_method(qconfig: str, method: str, percentile: float) -> str:
    """The stored qconfig text with activation_method / activation_percentile replaced or added."""
    for key, value in (("activation_method", method), ("activation_percentile", repr(float(percentile)))):
        pattern = re.compile(rf"(^|;){key}=[^;]*")
        if pattern.search(qconfig):
            qconfig = pattern.sub(lambda m: f"{m.group(1)}{key}={value}", qconfig)
        else:
            qconfig = f"{qconfig};{key}={value}"
    return qconfig


def set_calibration_method(prepared: torch.jit.ScriptModule, method: str, *,
                           percentile: float = 99.99) -> torch.jit.ScriptModule:
    """Switches every histogram observer of a prepared model to `method`, in place, and returns it.

    method: "minmax", "percentile", "entropy", "mse" or "auto" (see HistogramObserver).
    percentile: used by "percentile" and by "auto"'s percentile candidate, in (0, 100].
    The statistics are untouched: call it before or after calibrate(), then convert(). convert()
    leaves the prepared model as it is, so switching and converting again gives each method's model
    from one calibration. The stored qconfig records the method too.
    """
    check_method("torchquantx.set_calibration_method", method, percentile)
    cpp = _prepared_cpp("set_calibration_method", prepared)
    for _, _, obj in _histogram_observers("set_calibration_method", prepared):
        obj.set_method(method, float(percentile))
    cpp.setattr(_QCONFIG_ATTR, _with_method(cpp.getattr(_QCONFIG_ATTR), method, percentile))
    return prepared


def calibration_method(prepared: torch.jit.ScriptModule) -> Tuple[str, float]:
    """(method, percentile) of the prepared model's histogram observers; ValueError if they differ."""
    found = _histogram_observers("calibration_method", prepared)
    settings = {(obj.method(), obj.percentile()) for _, _, obj in found}
    if len(settings) != 1:
        raise ValueError(f"torchquantx.calibration_method: the observers use different methods {sorted(settings)}; "
                         "call set_calibration_method to make them one")
    return settings.pop()


def compare_methods(prepared: torch.jit.ScriptModule, methods: Sequence[str] = METHODS, *,
                    percentile: float = 99.99) -> List[Dict[str, object]]:
    """For each observer of a calibrated prepared model, each method's range and estimated SQNR.

    Returns one dict per observer: {"observer", "place", "<method>": (lo, hi, sqnr_db), ...,
    "auto_choice"} (the last when "auto" is among `methods`). The SQNR is the histogram's estimate
    for quantizing that observer's tensor (a layer output) alone, in dB.
    """
    for m in methods:
        check_method("torchquantx.compare_methods", m, percentile)
    rows: List[Dict[str, object]] = []
    for name, place, obj in _histogram_observers("compare_methods", prepared):
        if obj.batches() == 0 and obj.nonfloat_count() > 0:
            continue  # an integer tensor: convert drops its observer
        if obj.batches() == 0:
            raise ValueError(f"torchquantx.compare_methods: observer {name} ({place}) has seen no data; run "
                             "torchquantx.calibrate(prepared, data) first")
        row: Dict[str, object] = {"observer": name, "place": place}
        for m in methods:
            lo, hi, db, chosen = obj.estimate(m, float(percentile))
            row[m] = (lo, hi, db)
            if m == "auto":
                row["auto_choice"] = chosen
        rows.append(row)
    return rows


def calibrate_from_batchnorm(prepared: torch.jit.ScriptModule, *, n: float = 6.0,
                             input_range: Tuple[float, float] = (-3.0, 3.0)) -> List[str]:
    """Data-free calibration: sets activation ranges without running any data.

    A convolution whose BatchNorm was folded has pre-activations ~ N(beta, gamma^2) per channel;
    its output range is [beta - n|gamma|, beta + n|gamma|] (the widest over channels), clipped by a
    following ReLU / ReLU6 / clamp. Values without BatchNorm statistics get ranges by interval
    arithmetic from their inputs' (adds, and conv / linear through their weights: safe but wide);
    `input_range` is the range of the model input (e.g. about (-0.8, 2.0) for images normalized with
    Fashion-MNIST's mean and std). Observers whose range these rules cannot derive keep what they have
    (calibrate them with data, or convert lists them as unseen).

    Each derived observer is reset and fed its range's two ends, so use the "minmax" method for them
    (histogram methods would see a two-point distribution). Returns the observers set, in graph order.
    The model is changed in place (its observers) and stays usable.
    """
    cpp = _prepared_cpp("calibrate_from_batchnorm", prepared)
    if len(input_range) != 2 or not input_range[0] <= input_range[1]:
        raise ValueError(f"torchquantx.calibrate_from_batchnorm: input_range should be (lo, hi) with lo <= hi, got "
                         f"{input_range!r}")
    names, lo, hi, _ = torch.ops.quantx.batchnorm_ranges(cpp, float(n), float(input_range[0]), float(input_range[1]))
    for name, a, b in zip(names, lo, hi):
        obs = cpp.getattr(name)
        obs.reset()
        obs.forward(torch.tensor([a, b], dtype=torch.float32))
    return list(names)


def _output_sqnr(qmodel: torch.jit.ScriptModule, inputs: List[Tuple[Any, ...]], refs: List[torch.Tensor]) -> float:
    signal = noise = 0.0
    with torch.no_grad():
        for args, ref in zip(inputs, refs):
            out = qmodel(*args)
            out = out[0] if isinstance(out, (tuple, list)) else out
            signal += float(ref.double().pow(2).sum())
            noise += float((ref.double() - out.double()).pow(2).sum())
    return math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def choose_calibration_methods(prepared: torch.jit.ScriptModule, model: Callable[..., Any], data: Iterable[Any],
                               num_batches: Optional[int] = 4, *,
                               methods: Sequence[str] = ("minmax", "percentile", "entropy", "mse"),
                               percentile: float = 99.99, target: str = "quantx", progress: bool = True,
                               input_fn: Optional[Callable[[Any], Tuple[Any, ...]]] = None) -> Dict[str, str]:
    """`auto` judged on the model's output: picks each observer's method by the SQNR of the int8
    model's output against the float `model` on `data` (a few calibration batches suffice).

    First the best single method for all observers, then, observer by observer in graph order, any
    other method that raises the output SQNR. The histogram-only `auto` method judges each tensor
    alone; this sees how errors combine downstream, at the cost of one convert and one pass over
    `data` per candidate (observers x methods). Sets the methods in place and returns
    {observer: method}. The statistics are untouched.
    """
    from .quantize import _default_inputs, convert  # late: quantize imports this module's siblings
    for m in methods:
        check_method("torchquantx.choose_calibration_methods", m, percentile)
    if not methods:
        raise ValueError("torchquantx.choose_calibration_methods: methods should name at least one method, got ()")
    found = [(n, o) for n, _, o in _histogram_observers("choose_calibration_methods", prepared) if o.batches() > 0]
    to_inputs = input_fn or _default_inputs
    batches = list(data if num_batches is None else itertools.islice(data, num_batches))
    if not batches:
        raise ValueError("torchquantx.choose_calibration_methods: the data yielded no batches")
    inputs = [to_inputs(b) for b in batches]
    with torch.no_grad():
        refs = [model(*args) for args in inputs]
    refs = [r[0] if isinstance(r, (tuple, list)) else r for r in refs]

    def score() -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _output_sqnr(convert(prepared, target), inputs, refs)

    total = len(methods) + len(found) * (len(methods) - 1)
    bar = tqdm(total=total, desc="choose methods", unit="convert", disable=not progress) if tqdm else None
    try:
        best_method, best = methods[0], -math.inf
        for m in methods:
            for _, obj in found:
                obj.set_method(m, float(percentile))
            s = score()
            if s > best:
                best_method, best = m, s
            if bar is not None:
                bar.update(1)
        chosen = {name: best_method for name, _ in found}
        for _, obj in found:
            obj.set_method(best_method, float(percentile))
        for name, obj in found:
            for m in methods:
                if m == chosen[name]:
                    continue
                obj.set_method(m, float(percentile))
                s = score()
                if s > best + 0.01:
                    chosen[name], best = m, s
                else:
                    obj.set_method(chosen[name], float(percentile))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return chosen
