"""Graph-mode post-training quantization: prepare -> calibrate -> convert, on TorchScript.

    prepared = torchquantx.prepare(model)              # nn.Module or ScriptModule, eval mode
    torchquantx.calibrate(prepared, loader)            # progress bar; Ctrl-C keeps what was seen
    qmodel = torchquantx.convert(prepared)             # int8 ScriptModule
    torch.jit.save(qmodel, "model_int8.pt")

The passes run in C++ (torch.ops.quantx.prepare / convert); this module only adapts Python
objects to them and drives the calibration loop.
"""
from __future__ import annotations

import itertools
import warnings
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple

import torch

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency
    tqdm = None

QCONFIGS = ("x86", "fbgemm", "onednn", "qnnpack")
TARGETS = ("quantx", "native", "reference")

from .observers import check_method
from .stubs import with_torchquantx_stubs

_raw_prepare = torch.ops.quantx.prepare
_raw_convert = torch.ops.quantx.convert
_raw_summary = torch.ops.quantx.summary


def _script(model: torch.nn.Module, example_inputs: Optional[Tuple[Any, ...]],
            fn: str = "prepare") -> torch.jit.ScriptModule:
    """`model` as a ScriptModule (scripted, or traced with example_inputs); errors name torchquantx.<fn>."""
    if isinstance(model, torch.jit.ScriptModule):
        return model
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"torchquantx.{fn}: model should be a torch.nn.Module or a ScriptModule, got "
                        f"{type(model).__name__}")
    if model.training:
        raise ValueError(f"torchquantx.{fn}: the model is in training mode; call model.eval() first "
                         "(post-training quantization observes inference behaviour)")
    model = with_torchquantx_stubs(model)
    if example_inputs is not None:
        inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        with torch.no_grad():
            return torch.jit.trace(model, inputs)
    try:
        return torch.jit.script(model)
    except Exception as e:  # TorchScript reports the offending source in its message
        raise RuntimeError(
            f"torchquantx.{fn}: torch.jit.script could not compile {type(model).__name__}:\n{e}\n"
            f"Pass example_inputs=(an input batch,) to {fn}() to trace the model instead (tracing records "
            "one path through any data-dependent control flow).") from e


OBSERVERS = ("histogram", "minmax", "moving_average_minmax")


def prepare(model: torch.nn.Module, qconfig: str = "x86", *, example_inputs: Optional[Any] = None,
            skip: Sequence[str] = (), skip_types: Sequence[Any] = (),
            observer: Optional[str] = None, method: Optional[str] = None,
            percentile: float = 99.99, weight_bits: Optional[int] = None,
            weight_symmetric: Optional[bool] = None,
            weight_per_channel: Optional[bool] = None,
            reduce_range: Optional[bool] = None) -> torch.jit.ScriptModule:
    """A quantization-ready copy of `model` with observers at every activation that will be int8.

    qconfig: "x86" (default), "fbgemm", "onednn" or "qnnpack", as torch.ao.quantization's presets.
    observer: activation observer, "histogram" (default), "minmax" or "moving_average_minmax".
    method: how histogram observers set ranges: "minmax" (default), "percentile", "entropy", "mse"
    or "auto"; percentile is used by "percentile" and "auto". torchquantx.set_calibration_method
    changes it after calibration.
    skip: module names (e.g. "classifier" or "layer4.1") whose ops stay in float.
    skip_types: module classes (or class names) whose instances stay in float, e.g. (nn.LayerNorm,).
    weight_bits: 8 (default), 4 (values in [-8, 7], run on the int8 kernels) or 16 (no int16 kernels:
    those layers run in float on int16-rounded weights between int8 activations, W16A8 simulation).
    weight_symmetric: False gives affine weights (no int8 kernel takes them: simulated in float as 16-bit).
    weight_per_channel: overrides the preset's per-channel (x86, onednn) / per-tensor (qnnpack) weights.
    reduce_range: overrides the preset's 7-bit (x86, fbgemm) / 8-bit (onednn, qnnpack) activations;
    7 bits keep PyTorch's own kernels exact on x86 CPUs without VNNI (native_int8_saturates).
    The model is not modified. Scripting is tried first; example_inputs switches to tracing.
    """
    if qconfig not in QCONFIGS:
        raise ValueError(f"torchquantx.prepare: qconfig should be one of {', '.join(QCONFIGS)}, got {qconfig!r}")
    if observer is not None:
        if observer not in OBSERVERS:
            raise ValueError(f"torchquantx.prepare: observer should be one of {', '.join(OBSERVERS)}, got "
                             f"{observer!r}")
        qconfig = f"{qconfig};activation_observer={observer}"
    if method is not None:
        check_method("torchquantx.prepare", method, percentile)
        if method != "minmax" and observer not in (None, "histogram"):
            raise ValueError(f"torchquantx.prepare: method={method!r} needs observer='histogram' (the default), "
                             f"got observer={observer!r}")
        qconfig = f"{qconfig};activation_method={method};activation_percentile={float(percentile)!r}"
    qconfig += _weight_overrides("torchquantx.prepare", weight_bits, weight_symmetric, weight_per_channel)
    if reduce_range is not None:
        qconfig += f";activation_reduce_range={'true' if reduce_range else 'false'}"
    if isinstance(model, torch._C.ScriptModule):
        cpp = model
    else:
        scripted = _script(model, example_inputs)
        if scripted.training:
            raise ValueError("torchquantx.prepare: the model is in training mode; call model.eval() first")
        cpp = scripted._c
    type_names = [t if isinstance(t, str) else t.__name__ for t in skip_types]
    return torch.jit._recursive.wrap_cpp_module(_raw_prepare(cpp, qconfig, list(skip), type_names))


WEIGHT_BITS = (4, 8, 16)


def _weight_overrides(fn: str, bits: Optional[int], symmetric: Optional[bool], per_channel: Optional[bool]) -> str:
    """The ';weight_...=' qconfig overrides for the weight options that are set."""
    out = ""
    if bits is not None:
        if isinstance(bits, bool) or bits not in WEIGHT_BITS:
            raise ValueError(f"{fn}: weight_bits should be 4, 8 or 16, got {bits!r}")
        out += f";weight_bits={int(bits)}"
    for name, value in (("weight_symmetric", symmetric), ("weight_per_channel", per_channel)):
        if value is not None:
            if not isinstance(value, bool):
                raise ValueError(f"{fn}: {name} should be True or False, got {value!r}")
            out += f";{name}={int(value)}"
    return out


def _observer_stats(prepared: torch.jit.ScriptModule):
    places, batches, nonfinite = torch.ops.quantx.observer_stats(prepared._c)
    return list(zip(places, batches, nonfinite))


def _default_inputs(batch: Any) -> Tuple[Any, ...]:
    if isinstance(batch, torch.Tensor):
        return (batch,)
    if isinstance(batch, (tuple, list)) and batch:
        first = batch[0]
        return tuple(first) if isinstance(first, (tuple, list)) else (first,)
    if isinstance(batch, dict):
        raise TypeError("torchquantx.calibrate: batches are dicts; pass input_fn=lambda b: (b['input'],)")
    raise TypeError(f"torchquantx.calibrate: a batch should be a tensor or an (input, target) pair, got "
                    f"{type(batch).__name__}; pass input_fn to say how to call the model")


def calibrate(prepared: torch.jit.ScriptModule, data: Iterable[Any], num_batches: Optional[int] = None, *,
              progress: bool = True, input_fn: Optional[Callable[[Any], Tuple[Any, ...]]] = None
              ) -> torch.jit.ScriptModule:
    """Runs calibration data through a prepared model so its observers record activation ranges.

    data: a DataLoader or any iterable of tensors or (input, target) pairs; num_batches limits it.
    A KeyboardInterrupt stops early and keeps the statistics gathered so far (the model stays usable).
    """
    if not isinstance(prepared, torch.jit.ScriptModule) or not prepared._c.hasattr("_tqx_qconfig"):
        raise TypeError("torchquantx.calibrate: pass the module returned by torchquantx.prepare")
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"torchquantx.calibrate: num_batches should be >= 1, got {num_batches}")
    to_inputs = input_fn or _default_inputs
    batches = data if num_batches is None else itertools.islice(data, num_batches)
    total = num_batches
    if total is None and hasattr(data, "__len__"):
        total = len(data)  # type: ignore[arg-type]
    bar = tqdm(total=total, desc="calibrate", unit="batch", disable=not progress) if tqdm else None
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                try:
                    prepared(*to_inputs(batch))
                except Exception as e:
                    raise RuntimeError(f"torchquantx.calibrate: batch {seen} failed inside the model "
                                       f"(check its shape and dtype): {e}") from e
                seen += 1
                bad = [(place, n) for place, _, n in _observer_stats(prepared) if n > 0]
                if bad:
                    where = "\n  ".join(f"{place}: {n} values" for place, n in bad)
                    raise ValueError(f"torchquantx.calibrate: batch {seen - 1} produced NaN or Inf at\n  {where}")
                if bar is not None:
                    bar.update(1)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        print(f"torchquantx.calibrate: interrupted after {seen} batches; the prepared model keeps their statistics")
        raise
    finally:
        if bar is not None:
            bar.close()
    if seen == 0:
        raise ValueError("torchquantx.calibrate: the data yielded no batches")
    return prepared


def convert(prepared: torch.jit.ScriptModule, target: str = "quantx") -> torch.jit.ScriptModule:
    """The int8 model of a calibrated prepared module (which itself is not changed).

    target "quantx" (default): torchquantx's own int8 kernels (AMX / AVX-512 VNNI / AVX-VNNI / AVX2,
    chosen at run time) for conv2d, linear and add, with conv+add(+ReLU) and ReLU6 fused into the
    convolution and the input quantized channels-last; PyTorch's quantized ops for the rest.
    Loading the saved file needs `import torchquantx` first.
    target "native": PyTorch's quantized operators only; the saved file loads in stock PyTorch.
    target "reference": float ops between quantize/dequantize pairs, for checking numerics.
    """
    if target not in TARGETS:
        raise ValueError(f"torchquantx.convert: target should be one of {', '.join(TARGETS)}, got {target!r}")
    cpp = prepared._c if isinstance(prepared, torch.jit.ScriptModule) else prepared
    if not isinstance(cpp, torch._C.ScriptModule):
        raise TypeError(f"torchquantx.convert: pass the module returned by torchquantx.prepare, got "
                        f"{type(prepared).__name__}")
    converted = torch.jit._recursive.wrap_cpp_module(_raw_convert(cpp, target))
    plan = _raw_summary(converted._c).splitlines()
    for line in plan:
        if line.startswith("warning: "):
            warnings.warn("torchquantx.convert: " + line[len("warning: "):], stacklevel=2)
    unreached = [line for line in plan if line.endswith(_UNREACHED)]
    if unreached:
        warnings.warn("torchquantx.convert: no calibration batch entered the if/loop branches of these ops; they "
                      "stay in float (calibrate with data that takes those branches to quantize them):\n  " +
                      "\n  ".join(line.split(" -> ")[0] for line in unreached), stacklevel=2)
    return converted


_UNREACHED = "(its branch never ran during calibration)"


def quantize_dynamic(model: torch.nn.Module, dtype: torch.dtype = torch.qint8, *, per_channel: bool = True,
                     reduce_range: Optional[bool] = None,
                     example_inputs: Optional[Any] = None) -> torch.jit.ScriptModule:
    """Dynamic quantization: every linear layer gets int8 weights, packed once; its input is
    quantized per batch at run time. No calibration. Returns a ScriptModule (nn.Module input is
    scripted, or traced with example_inputs); the model itself is not modified.

    per_channel: int8 weights per output channel (default) or per tensor (torch.ao's default).
    reduce_range: 7-bit activations, as torch.ao's dynamic modules use. Default: on where PyTorch's
    int8 kernels would otherwise saturate (x86 without VNNI, see native_int8_saturates), off elsewhere.
    """
    if dtype != torch.qint8:
        raise ValueError(f"torchquantx.quantize_dynamic: dtype should be torch.qint8 (float16 dynamic kernels need "
                         f"fbgemm, which this PyTorch lacks), got {dtype}")
    if reduce_range is None:
        from . import native_int8_saturates
        reduce_range = native_int8_saturates()
    cpp = model if isinstance(model, torch._C.ScriptModule) else _script(model, example_inputs, "quantize_dynamic")._c
    return torch.jit._recursive.wrap_cpp_module(torch.ops.quantx.quantize_dynamic(cpp, per_channel, reduce_range, "onednn"))


def quantize_weights(model: torch.nn.Module, dtype: torch.dtype = torch.qint8, *,
                     example_inputs: Optional[Any] = None) -> torch.jit.ScriptModule:
    """Weight-only quantization: conv and linear weights are stored as int8 (dtype torch.qint8 or
    torch.int8) or int16 (torch.int16), symmetric per output channel, and dequantized once when
    the saved file is loaded; compute stays float. The file shrinks to about 1/4 (int8) or 1/2
    (int16); int16 is practically lossless. Loads in stock PyTorch.
    """
    bits = {torch.qint8: 8, torch.int8: 8, torch.int16: 16}.get(dtype)
    if bits is None:
        raise ValueError(f"torchquantx.quantize_weights: dtype should be torch.qint8, torch.int8 or torch.int16, "
                         f"got {dtype}")
    cpp = model if isinstance(model, torch._C.ScriptModule) else _script(model, example_inputs, "quantize_weights")._c
    return torch.jit._recursive.wrap_cpp_module(torch.ops.quantx.quantize_weights(cpp, bits))


def summary(module: torch.jit.ScriptModule, file: Any = None) -> str:
    """The quantization plan: observers of a prepared model, or per op what a converted model runs."""
    cpp = module._c if isinstance(module, torch.jit.ScriptModule) else module
    text = _raw_summary(cpp)
    print(text, file=file)
    return text


def _op_face(fn: Callable[..., Any], raw: Any) -> Callable[..., Any]:
    """torch.ops.quantx.<fn> that also accepts Python modules (the raw op takes `scripted._c` only)."""
    def face(module: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(module, torch._C.ScriptModule) and not isinstance(module, torch.jit.ScriptModule):
            return raw(module, *args, **kwargs)
        return fn(module, *args, **kwargs)
    face.__doc__ = fn.__doc__
    face.raw = raw  # type: ignore[attr-defined]
    return face


# The documented entry points torch.ops.quantx.prepare(model) / convert(prepared) accept nn.Module
# and ScriptModule objects, which the dispatcher's argument parser cannot.
torch.ops.quantx.prepare = _op_face(prepare, _raw_prepare)
torch.ops.quantx.convert = _op_face(convert, _raw_convert)
