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
produces. learnable=True trains the activation scales and zero points (LSQ); sync_observers keeps
the state DistributedDataParallel does not synchronise identical across processes.
"""
from __future__ import annotations

import warnings
from typing import Any, List, Optional, Sequence

import torch
import torch.distributed as dist

from .quantize import QCONFIGS, _op_face, _weight_overrides
from .stubs import with_torchquantx_stubs

_raw_prepare_qat = torch.ops.quantx.prepare_qat

_OBS = "_tqx_obs_"
_BN_FROZEN = "_tqx_bn_frozen"
_LSQ_PREFIXES = ("_tqx_lsq_scale_", "_tqx_lsq_zero_point_")
# Backward passes that reach the QAT parameters while none of them changes before prepare_qat warns
# that the optimizer does not hold them (accumulating gradients over more micro-batches than this
# before the first step is unusual).
_STALE_BACKWARDS = 8


def _unwrap(qat: Any) -> Any:
    # DistributedDataParallel (and DataParallel) keep the QAT module as .module.
    return qat.module if isinstance(qat, torch.nn.parallel.DistributedDataParallel) else qat


def _qat_module(qat: Any, fn: str) -> torch._C.ScriptModule:
    qat = _unwrap(qat)
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
                weight_symmetric: Optional[bool] = None, weight_per_channel: Optional[bool] = None,
                learnable: bool = False) -> torch.jit.ScriptModule:
    """A trainable quantization-aware-training copy of `model`, which must be in training mode.

    Fake-quantizers (moving-average min/max, per-tensor affine, straight-through gradient) sit at
    every activation prepare() would observe; conv/linear weights are fake-quantized per qconfig
    (per-channel symmetric for x86/fbgemm/onednn); a BatchNorm after a conv is folded into it as
    in the int8 model, its statistics still updating while training. qconfig and the weight and
    skip options mean what they mean for prepare().

    learnable=True (LSQ, Esser et al. 2020): each activation fake-quantizer's scale and zero point
    are parameters of the QAT module (``_tqx_lsq_scale_<i>``, ``_tqx_lsq_zero_point_<i>``, in
    ``qat.parameters()``), set from the range the first training batch shows and then trained with
    LSQ's gradients; convert uses the learned values. Weights keep their min/max grid.

    The copy's parameters are new tensors: build the optimizer from ``qat.parameters()`` (an
    optimizer built over the float model's parameters would train nothing; the QAT module warns
    when its parameters get gradients but never change). The model itself is not modified.
    Statistics update only in training mode, so ``qat.eval()`` runs what convert will produce.
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
    qat_cpp = _raw_prepare_qat(cpp, qconfig, list(skip), type_names)
    if learnable:
        torch.ops.quantx.qat_make_learnable(qat_cpp)
    qat = torch.jit._recursive.wrap_cpp_module(qat_cpp)
    _watch_optimizer(qat)
    return qat


def _watch_optimizer(qat: torch.jit.ScriptModule) -> None:
    """Warns once when backward passes keep reaching the QAT parameters while none of them ever
    changes: the optimizer was built over other tensors (usually the float model's)."""
    # LSQ scales change in place without an optimizer (set on the first batch): not evidence.
    params = [p for n, p in qat.named_parameters() if not n.startswith(_LSQ_PREFIXES)]
    if not params:
        return
    versions = [p._version for p in params]
    state = {"backwards": 0, "done": False}

    def hook(grad: torch.Tensor) -> None:
        if state["done"]:
            return
        if any(p._version != v for p, v in zip(params, versions)):
            state["done"] = True  # something steps them: nothing to watch any more
            return
        state["backwards"] += 1
        if state["backwards"] == _STALE_BACKWARDS:
            state["done"] = True
            warnings.warn(
                f"torchquantx.prepare_qat: {_STALE_BACKWARDS} backward passes reached the QAT module's parameters "
                "but none of them changed: the optimizer does not hold them. Build it after prepare_qat from "
                "qat.parameters() (the QAT module trains copies; the float model's parameters are not used)",
                UserWarning, stacklevel=2)

    params[0].register_hook(hook)


def learnable_qparams(qat: Any) -> List[torch.nn.Parameter]:
    """The LSQ scale and zero-point parameters of a QAT module made with learnable=True (empty
    otherwise), e.g. for an optimizer parameter group without weight decay."""
    _qat_module(qat, "learnable_qparams")
    return [p for n, p in _unwrap(qat).named_parameters() if n.startswith(_LSQ_PREFIXES)]


def sync_observers(qat: Any, group: Optional[Any] = None) -> Any:
    """Makes every process of `group` (default: the whole world) hold the same QAT statistics, so each
    converts to identical qparams. DistributedDataParallel keeps parameters identical but not this state:

    - activation ranges: the minimum of the observed minima and the maximum of the maxima. Called after
      every step, this is exactly the moving average of the global batch's minimum and maximum (each
      process moved the same average towards its own batch's bound, and rounding is monotonic);
      called only before convert, it is the widest range any process ended with.
    - BatchNorm running statistics: averaged over the processes.
    - learnable (LSQ) scales and zero points: the first process's values (each process sets them from
      its own first batch; the gradients DDP averages keep them equal afterwards).

    Call it on every process (it runs collectives: two all-reduces and, with learnable=True, one
    broadcast), on the QAT module or its DistributedDataParallel wrapper. Without an initialised
    torch.distributed process group it does nothing, so the same script runs in one process.
    """
    cpp = _qat_module(qat, "sync_observers")
    if not dist.is_available() or not dist.is_initialized():
        return qat
    module = _unwrap(qat)
    fqs = _fake_quantizers(cpp)
    if fqs:
        # float64 holds the observers' float32 bounds exactly; +-inf marks an observer with no data yet.
        bounds = torch.tensor([fq.min_val() for fq in fqs] + [-fq.max_val() for fq in fqs], dtype=torch.float64)
        dist.all_reduce(bounds, op=dist.ReduceOp.MIN, group=group)
        n = len(fqs)
        for i, fq in enumerate(fqs):
            fq.set_min_max(bounds[i].item(), -bounds[n + i].item())
    stats = [b for n, b in module.named_buffers() if b.is_floating_point() and "running_" in n]
    if stats:
        flat = torch.cat([b.detach().reshape(-1) for b in stats])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flat /= dist.get_world_size(group)
        with torch.no_grad():
            offset = 0
            for b in stats:
                b.copy_(flat[offset:offset + b.numel()].view_as(b))
                offset += b.numel()
    lsq = learnable_qparams(module)
    if lsq:
        flat = torch.cat([p.detach().reshape(-1) for p in lsq])
        src = 0 if group is None else dist.distributed_c10d._get_global_rank(group, 0)
        dist.broadcast(flat, src=src, group=group)
        with torch.no_grad():
            for i, p in enumerate(lsq):
                p.copy_(flat[i:i + 1].view_as(p))
    return qat


_ACTIVATION_KEYS = ("activation_reduce_range",)


def _qconfig_fields(cpp: torch._C.ScriptModule) -> dict:
    return dict(kv.split("=", 1) for kv in cpp.getattr("_tqx_qconfig").split(";") if "=" in kv)


def init_from_calibration(qat: Any, prepared: Any) -> Any:
    """Starts QAT from PTQ-calibrated activation qparams: each fake-quantizer of `qat` takes the range
    the matching observer of `prepared` (tqx.prepare of the same model with the same qconfig and skip
    options, then tqx.calibrate) chose, with its range method (entropy, mse, ...). The moving average
    continues from there while observers are enabled (disable_observer keeps it); with
    learnable=True the scales and zero points start at the calibrated values. Call it before training.
    """
    cpp = _qat_module(qat, "init_from_calibration")
    pcpp = prepared._c if isinstance(prepared, torch.jit.ScriptModule) else prepared
    if not isinstance(pcpp, torch._C.ScriptModule) or not pcpp.hasattr("_tqx_qconfig") or pcpp.hasattr("_tqx_qat"):
        raise TypeError("torchquantx.init_from_calibration: prepared should be a module from torchquantx.prepare, "
                        f"got {type(prepared).__name__}")
    ours, theirs = _qconfig_fields(cpp), _qconfig_fields(pcpp)
    if any(ours.get(k) != theirs.get(k) for k in _ACTIVATION_KEYS):
        raise ValueError("torchquantx.init_from_calibration: prepared and qat should use the same activation range "
                         f"(activation_reduce_range {theirs.get('activation_reduce_range')} vs "
                         f"{ours.get('activation_reduce_range')}); prepare with the qconfig given to prepare_qat")
    fqs, observers = _fake_quantizers(cpp), _fake_quantizers(pcpp)
    if len(fqs) != len(observers):
        raise ValueError(f"torchquantx.init_from_calibration: prepared has {len(observers)} observers but qat "
                         f"{len(fqs)} fake-quantizers; prepare the same model with the same skip options")
    lsq = dict(_unwrap(qat).named_parameters())
    for i, (fq, obs) in enumerate(zip(fqs, observers)):
        if obs.batches() == 0:
            raise ValueError(f"torchquantx.init_from_calibration: observer {i} of prepared saw no data; run "
                             "torchquantx.calibrate(prepared, data) first")
        scale, zp = (t.reshape(-1)[0].item() for t in obs.calculate_qparams())
        fq.set_range_from_qparams(scale, int(zp))
        if f"_tqx_lsq_scale_{i}" in lsq:
            with torch.no_grad():
                lsq[f"_tqx_lsq_scale_{i}"].fill_(scale)
                lsq[f"_tqx_lsq_zero_point_{i}"].fill_(float(zp))
    return qat


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
