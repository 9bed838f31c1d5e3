"""Accuracy recovery: cross-layer equalization and bias correction (Nagel et al., 2019).

    eq = torchquantx.equalize(model)                          # data-free; the float function is kept
    prepared = torchquantx.prepare(eq, "qnnpack")
    prepared = torchquantx.bias_correction(prepared, loader)  # or bias_correction(eq) without data
    torchquantx.calibrate(prepared, loader)
    qmodel = torchquantx.convert(prepared)

The passes run in C++ (torch.ops.quantx.equalize, torch.ops.quantx.bias_correction*); this module
adapts Python objects to them and drives the data loop with a progress bar.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, List, Optional, Tuple

import torch

from .quantize import QCONFIGS, _default_inputs, _script, tqdm


def _wrap(cpp: torch._C.ScriptModule) -> torch.jit.ScriptModule:
    return torch.jit._recursive.wrap_cpp_module(cpp)


def _cpp_module(fn: str, model: Any, example_inputs: Optional[Any]) -> torch._C.ScriptModule:
    if isinstance(model, torch.jit.ScriptModule):
        return model._c
    if isinstance(model, torch._C.ScriptModule):
        return model
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"torchquantx.{fn}: model should be a torch.nn.Module or a ScriptModule, got "
                        f"{type(model).__name__}")
    if model.training:
        raise ValueError(f"torchquantx.{fn}: the model is in training mode; call model.eval() first")
    return _script(model, example_inputs)._c


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
