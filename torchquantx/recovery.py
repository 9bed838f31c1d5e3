"""Accuracy recovery: cross-layer equalization and bias correction (Nagel et al., 2019), AdaRound
(Nagel et al., 2020) and the ptq() pipeline that applies them in order.

    eq = torchquantx.equalize(model)                          # data-free; the float function is kept
    prepared = torchquantx.prepare(eq, "qnnpack")
    prepared = torchquantx.bias_correction(prepared, loader)  # or bias_correction(eq) without data
    torchquantx.calibrate(prepared, loader)
    qmodel = torchquantx.convert(prepared)

The passes run in C++ (torch.ops.quantx.equalize, torch.ops.quantx.bias_correction*); this module
adapts Python objects to them and drives the data loop with a progress bar.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Iterable, List, Optional, Tuple

import torch

from .quantize import QCONFIGS, _default_inputs, _script, calibrate, convert, prepare, tqdm


def _wrap(cpp: torch._C.ScriptModule) -> torch.jit.ScriptModule:
    return torch.jit._recursive.wrap_cpp_module(cpp)


def _cpp_module(fn: str, model: Any, example_inputs: Optional[Any]) -> torch._C.ScriptModule:
    if isinstance(model, torch.jit.ScriptModule):
        return model._c
    if isinstance(model, torch._C.ScriptModule):
        return model
    return _script(model, example_inputs, fn)._c


def equalize(model: torch.nn.Module, *, relu6_to_relu: bool = False, absorb_high_bias: bool = True,
             example_inputs: Optional[Any] = None) -> torch.jit.ScriptModule:
    """Cross-layer equalization: a float copy of `model` whose consecutive conv/linear layers are
    rescaled per channel so that their weight ranges match, which makes per-tensor int8 weights
    (and activations) far more accurate on models with imbalanced channels. Run it before prepare.

    The float function is unchanged (ReLU is positively homogeneous), except:
    relu6_to_relu: ReLU6 between two layers becomes ReLU so that the pair can be equalized (ReLU6 is
        not homogeneous; without this, such pairs are skipped). Outputs change where an activation
        exceeded 6.
    absorb_high_bias: where a BatchNorm was folded into the first layer and a ReLU follows, moves
        max(0, beta - 3|gamma|) of its bias into the next layer (data-free; outputs change only for
        pre-activations below beta - 3|gamma|, ~0.1% of a Gaussian's).
    Returns a canonicalized (frozen) ScriptModule; `example_inputs` traces instead of scripting.
    """
    cpp = _cpp_module("equalize", model, example_inputs)
    return _wrap(torch.ops.quantx.equalize(cpp, relu6_to_relu, absorb_high_bias))


def bias_correction(model: torch.nn.Module, data: Optional[Iterable[Any]] = None, num_batches: Optional[int] = None,
                    *, qconfig: Optional[str] = None, progress: bool = True,
                    input_fn: Optional[Callable[[Any], Tuple[Any, ...]]] = None,
                    example_inputs: Optional[Any] = None) -> torch.jit.ScriptModule:
    """Bias correction: a copy of `model` in which every conv/linear that convert will quantize has
    bias -= (W_q - W) E[x], removing the mean output error its int8 weights would add.

    model: a prepared module (its qconfig decides per-channel or per-tensor weights; leave qconfig
        unset) or a float model / equalize's result, then quantized as `qconfig` says (default
        "x86") - prepare the result with the same qconfig.
    data: a DataLoader or iterable of tensors or (input, target) pairs; E[x] is each layer's
        per-input-channel float input mean over it (num_batches limits it). Without data, E[x]
        comes from BatchNorm statistics (data-free; float models and equalize's result only).
    """
    if qconfig is not None and qconfig not in QCONFIGS:
        raise ValueError(f"torchquantx.bias_correction: qconfig should be one of {', '.join(QCONFIGS)}, got "
                         f"{qconfig!r}")
    cpp = _cpp_module("bias_correction", model, example_inputs)
    if data is None:
        if num_batches is not None:
            raise ValueError("torchquantx.bias_correction: num_batches limits data, but no data was given")
        return _wrap(torch.ops.quantx.bias_correction_analytic(cpp, qconfig))
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"torchquantx.bias_correction: num_batches should be >= 1, got {num_batches}")

    probe = _wrap(torch.ops.quantx.bias_correction_probe(cpp, qconfig))
    to_inputs = input_fn or _default_inputs
    batches = data if num_batches is None else itertools.islice(data, num_batches)
    total = num_batches
    if total is None and hasattr(data, "__len__"):
        total = len(data)  # type: ignore[arg-type]
    bar = tqdm(total=total, desc="bias_correction", unit="batch", disable=not progress) if tqdm else None
    sums: List[torch.Tensor] = []
    counts: List[int] = []
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                try:
                    batch_sums, batch_counts = probe(*to_inputs(batch))
                except Exception as e:
                    raise RuntimeError(f"torchquantx.bias_correction: batch {seen} failed inside the model "
                                       f"(check its shape and dtype): {e}") from e
                if seen == 0:
                    sums, counts = list(batch_sums), list(batch_counts)
                else:
                    sums = [a + b for a, b in zip(sums, batch_sums)]
                    counts = [a + b for a, b in zip(counts, batch_counts)]
                seen += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if seen == 0:
        raise ValueError("torchquantx.bias_correction: the data yielded no batches")
    means = [s / c if c > 0 else torch.empty(0, dtype=torch.float64) for s, c in zip(sums, counts)]
    return _wrap(torch.ops.quantx.bias_correction_apply(cpp, means, qconfig))


def _collect(fn: str, data: Iterable[Any], num_batches: Optional[int], progress: bool,
             input_fn: Optional[Callable[[Any], Tuple[Any, ...]]]) -> List[List[torch.Tensor]]:
    """The first num_batches batches of data as lists of forward arguments, with a progress bar."""
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"torchquantx.{fn}: num_batches should be >= 1, got {num_batches}")
    to_inputs = input_fn or _default_inputs
    total = num_batches
    if total is None and hasattr(data, "__len__"):
        total = len(data)  # type: ignore[arg-type]
    batches = data if num_batches is None else itertools.islice(data, num_batches)
    out: List[List[torch.Tensor]] = []
    for batch in tqdm(batches, total=total, desc=f"{fn}: data", unit="batch", disable=not progress) if tqdm \
            else batches:
        args = list(to_inputs(batch))
        if not all(isinstance(a, torch.Tensor) for a in args):
            raise TypeError(f"torchquantx.{fn}: the model's inputs should be tensors, got "
                            f"{[type(a).__name__ for a in args]}; pass input_fn")
        out.append(args)
    if not out:
        raise ValueError(f"torchquantx.{fn}: data yielded no batches; pass a non-empty DataLoader or list")
    return out


def adaround(model: torch.nn.Module, data: Iterable[Any], num_batches: Optional[int] = None, *,
             iters: int = 1000, max_rows: int = 4096, reg: float = 0.01, seed: int = 0,
             qconfig: Optional[str] = None, progress: bool = True,
             input_fn: Optional[Callable[[Any], Tuple[Any, ...]]] = None,
             example_inputs: Optional[Any] = None) -> torch.jit.ScriptModule:
    """AdaRound (Nagel et al. 2020): a copy of `model` whose conv/linear weights are rounded up or
    down, per weight, to minimise each layer's output error on `data`, and written back on their
    quantization grid, so convert (round-to-nearest, same qparams) produces exactly those integers.
    Most useful at 4 bits (prepare(..., weight_bits=4)); at 8 bits round-to-nearest is near-optimal.

    model: a prepared module (its weight options are used; leave qconfig unset) or a float model,
        then rounded for `qconfig` (default "x86") - prepare the result with the same qconfig and
        weight options.
    data: DataLoader or iterable of tensors / (input, target) pairs; each layer's FLOAT input over
        the first num_batches batches (all are held in memory) is sampled to max_rows rows.
    iters: Adam steps per layer (the paper uses 10000; 1000 recovers most of it on CPU).
    The result's attribute `_tqx_adaround` lists each layer's output MSE with round-to-nearest and
    with AdaRound; a layer where AdaRound does not win keeps its weights.
    """
    if qconfig is not None and qconfig.split(";")[0] not in QCONFIGS:
        raise ValueError(f"torchquantx.adaround: qconfig should start with one of {', '.join(QCONFIGS)}, got "
                         f"{qconfig!r}")
    for name, value, low in (("iters", iters, 0), ("max_rows", max_rows, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"torchquantx.adaround: {name} should be an int >= {low}, got {value!r}")
    cpp = _cpp_module("adaround", model, example_inputs)
    batches = _collect("adaround", data, num_batches, progress, input_fn)
    if progress:
        print(f"torchquantx.adaround: optimising the rounding of each layer ({iters} steps per layer)")
    return _wrap(torch.ops.quantx.adaround(cpp, batches, qconfig, iters, max_rows, float(reg), seed))


def adaround_report(module: torch.jit.ScriptModule) -> List[Tuple[str, float, float]]:
    """(layer, output MSE with round-to-nearest, with AdaRound) per layer of adaround's result."""
    cpp = module._c if isinstance(module, torch.jit.ScriptModule) else module
    if not cpp.hasattr("_tqx_adaround"):
        raise ValueError("torchquantx.adaround_report: the module did not come from torchquantx.adaround")
    out = []
    for line in cpp.getattr("_tqx_adaround").splitlines():
        head, _, rest = line.partition("  mse_nearest=")
        nearest, _, tail = rest.partition(" mse_adaround=")
        out.append((head, float(nearest), float(tail.split()[0])))
    return out



@dataclasses.dataclass
class Recipe:
    """The steps of torchquantx.ptq; each can be switched off."""
    equalize: bool = True          # cross-layer equalization (float model, before prepare)
    adaround: bool = True          # AdaRound on the weights (after prepare, which folds BatchNorm)
    bias_correction: bool = True   # empirical bias correction (after calibration)
    method: str = "mse"            # activation range method (prepare(method=...))
    adaround_iters: int = 1000     # AdaRound's Adam steps per layer


def _recipe(recipe: Any) -> Recipe:
    if recipe is None:
        return Recipe()
    if isinstance(recipe, Recipe):
        return recipe
    if not isinstance(recipe, dict):
        raise TypeError(f"torchquantx.ptq: recipe should be a dict or torchquantx.recovery.Recipe, got "
                        f"{type(recipe).__name__}")
    known = [f.name for f in dataclasses.fields(Recipe)]
    unknown = sorted(set(recipe) - set(known))
    if unknown:
        raise ValueError(f"torchquantx.ptq: unknown recipe keys {unknown}; the keys are {', '.join(known)}")
    return Recipe(**recipe)


def ptq(model: torch.nn.Module, data: Iterable[Any], recipe: Any = None, *, qconfig: str = "x86",
        weight_bits: Optional[int] = None, target: str = "quantx", num_batches: Optional[int] = None,
        progress: bool = True, input_fn: Optional[Callable[[Any], Tuple[Any, ...]]] = None,
        example_inputs: Optional[Any] = None) -> torch.jit.ScriptModule:
    """Post-training quantization with the standard recovery pipeline, in order:
    equalize -> prepare (BatchNorm folding) -> AdaRound -> calibrate -> bias correction -> convert.

    recipe: a dict (or Recipe) switching steps: {"equalize": True, "adaround": True,
        "bias_correction": True, "method": "mse", "adaround_iters": 1000} are the defaults.
        Unknown keys are an error. After AdaRound the weights sit on their grid, so bias
        correction only corrects what AdaRound left (the elements that set each channel's range).
    qconfig, weight_bits, target: as prepare / convert. data: the calibration batches (the first
        num_batches are read once and reused by every step).
    """
    r = _recipe(recipe)
    batches = _collect("ptq", data, num_batches, progress, input_fn)
    m: Any = model
    if r.equalize:
        m = equalize(m, example_inputs=example_inputs)
    prepared = prepare(m, qconfig, example_inputs=example_inputs, method=r.method, weight_bits=weight_bits)
    if r.adaround:
        prepared = adaround(prepared, batches, iters=r.adaround_iters, progress=progress)
    calibrate(prepared, batches, progress=progress, input_fn=tuple)
    if r.bias_correction:
        prepared = bias_correction(prepared, batches, progress=progress, input_fn=tuple)
    return convert(prepared, target)
