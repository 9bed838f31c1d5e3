"""Quantization-aware training: prepare_qat -> train -> convert, with the same int8 runtime as PTQ.

    qat = torchquantx.prepare_qat(model, qconfig="fbgemm")   # model in training mode
    opt = torch.optim.SGD(qat.parameters(), lr=1e-3)          # qat's parameters, not model's
    for x, y in loader:
        loss = F.cross_entropy(qat(x), y); opt.zero_grad(); loss.backward(); opt.step()
    torchquantx.freeze_bn_stats(qat); torchquantx.disable_observer(qat)
    qmodel = torchquantx.convert(qat.eval())

The pass runs in C++ (torch.ops.quantx.prepare_qat): fake-quantizers sit exactly where prepare puts
observers, conv/linear weights are fake-quantized on the grid convert uses, Conv+BatchNorm folding
is simulated. eval() of the QAT module computes (within rounding of the int8 kernels) what convert
produces.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from .quantize import QCONFIGS, _op_face, _weight_overrides
from .stubs import with_torchquantx_stubs

_raw_prepare_qat = torch.ops.quantx.prepare_qat

_OBS = "_tqx_obs_"
_BN_FROZEN = "_tqx_bn_frozen"


def _qat_module(qat: Any, fn: str) -> torch._C.ScriptModule:
    cpp = qat._c if isinstance(qat, torch.jit.ScriptModule) else qat
    if not isinstance(cpp, torch._C.ScriptModule) or not cpp.hasattr("_tqx_qat"):
        raise TypeError(f"torchquantx.{fn}: pass the module returned by torchquantx.prepare_qat, got "
                        f"{type(qat).__name__}")
    return cpp


def _fake_quantizers(cpp: torch._C.ScriptModule):
    out = []
    i = 0
    while True:
        # Observer numbers are dense: prepare numbers them 0, 1, 2, ...
        name = f"{_OBS}{i}"
        if not cpp.hasattr(name):
            return out
        out.append(cpp.getattr(name))
        i += 1


def prepare_qat(model: torch.nn.Module, qconfig: str = "x86", *, example_inputs: Optional[Any] = None,
                skip: Sequence[str] = (), skip_types: Sequence[Any] = (), weight_bits: Optional[int] = None,
                weight_symmetric: Optional[bool] = None,
                weight_per_channel: Optional[bool] = None) -> torch.jit.ScriptModule:
    """A trainable quantization-aware-training copy of `model`, which must be in training mode.

    Fake-quantizers (moving-average min/max, per-tensor affine, straight-through gradient) sit at
    every activation prepare() would observe; conv/linear weights are fake-quantized per qconfig
    (per-channel symmetric for x86/fbgemm/onednn); a BatchNorm after a conv is folded into it as
    in the int8 model, its statistics still updating while training. qconfig and the weight and
    skip options mean what they mean for prepare().

    The copy's parameters are new tensors: build the optimizer from ``qat.parameters()`` (an
    optimizer built over the float model's parameters would train nothing). The model itself is
    not modified. Statistics update only in training mode, so ``qat.eval()`` runs what convert
    will produce.
    """
    if qconfig not in QCONFIGS:
        raise ValueError(f"torchquantx.prepare_qat: qconfig should be one of {', '.join(QCONFIGS)}, got {qconfig!r}")
    qconfig += _weight_overrides("torchquantx.prepare_qat", weight_bits, weight_symmetric, weight_per_channel)
    if isinstance(model, torch._C.ScriptModule) and not isinstance(model, torch.jit.ScriptModule):
        cpp = model
    else:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"torchquantx.prepare_qat: model should be a torch.nn.Module or a ScriptModule, got "
                            f"{type(model).__name__}")
        if not model.training:
            raise ValueError("torchquantx.prepare_qat: the model is in eval mode; call model.train() first "
                             "(quantization-aware training trains it; for post-training quantization use prepare)")
        if isinstance(model, torch.jit.ScriptModule):
            cpp = model._c
        else:
            model = with_torchquantx_stubs(model)
            if example_inputs is not None:
                inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
                with torch.no_grad():
                    cpp = torch.jit.trace(model, inputs)._c
            else:
                try:
                    cpp = torch.jit.script(model)._c
                except Exception as e:
                    raise RuntimeError(
                        f"torchquantx.prepare_qat: torch.jit.script could not compile {type(model).__name__}:\n{e}\n"
                        "Pass example_inputs=(an input batch,) to trace the model instead.") from e
    type_names = [t if isinstance(t, str) else t.__name__ for t in skip_types]
    return torch.jit._recursive.wrap_cpp_module(_raw_prepare_qat(cpp, qconfig, list(skip), type_names))


def freeze_bn_stats(qat: torch.jit.ScriptModule, frozen: bool = True) -> torch.jit.ScriptModule:
    """Stops BatchNorm statistics updates: folded BatchNorms use their running statistics from now on
    (torch.ao.nn.intrinsic.qat.freeze_bn_stats). ``frozen=False`` undoes it."""
    _qat_module(qat, "freeze_bn_stats").setattr(_BN_FROZEN, bool(frozen))
    return qat


def _set_observers(qat: Any, fn: str, on: bool) -> Any:
    for fq in _fake_quantizers(_qat_module(qat, fn)):
        fq.enable_observer(on)
    return qat


def disable_observer(qat: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Fixes the activation qparams: fake-quantizers stop updating their ranges (they keep fake-quantizing)."""
    return _set_observers(qat, "disable_observer", False)


def enable_observer(qat: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Lets fake-quantizers update their ranges again while training."""
    return _set_observers(qat, "enable_observer", True)


def enable_fake_quant(qat: torch.jit.ScriptModule, on: bool = True) -> torch.jit.ScriptModule:
    """Turns activation fake-quantization on (default) or off; observers keep observing either way."""
    for fq in _fake_quantizers(_qat_module(qat, "enable_fake_quant")):
        fq.enable_fake_quant(on)
    return qat


def disable_fake_quant(qat: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Activations run in float (observers still record ranges), e.g. for a float warm-up."""
    return enable_fake_quant(qat, False)


# The documented entry point torch.ops.quantx.prepare_qat(model) accepts nn.Module and
# ScriptModule objects too (the raw op takes `scripted._c` only).
torch.ops.quantx.prepare_qat = _op_face(prepare_qat, _raw_prepare_qat)
