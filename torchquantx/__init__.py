"""torchquantx: automatic int8 quantization of PyTorch models on CPUs, in C++ over TorchScript.

Importing this package loads libtorchquantx.so, which registers ``torch.ops.quantx.*`` operators
and the ``torch.classes.quantx.*`` observer classes.
"""
from __future__ import annotations

import torch

from ._library import library_path, load as _load

_load()

from . import _C  # noqa: E402  (needs the library loaded first)
from . import analysis, calibration, observers, ops, qat, quantize, recovery, report  # noqa: E402
from .analysis import analyze, quantize_to_target  # noqa: E402
from .report import write_report  # noqa: E402
from .export import export_onnx, read_qparams_json, read_trt_cache, write_qparams_json, write_trt_cache  # noqa: E402
from .calibration import (calibrate_from_batchnorm, calibration_method, choose_calibration_methods,  # noqa: E402
                          compare_methods, set_calibration_method)
from .observers import (  # noqa: E402
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)
from .qat import (  # noqa: E402
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
    freeze_bn_stats,
    init_from_calibration,
    learnable_qparams,
    prepare_qat,
    sync_observers,
)
from .quantize import calibrate, convert, prepare, quantize_dynamic, quantize_weights, summary  # noqa: E402
from .recovery import adaround, adaround_report, bias_correction, equalize, ptq  # noqa: E402
from .stubs import DeQuantStub, QuantStub  # noqa: E402
from .ops import (  # noqa: E402
    choose_qparams,
    dequantize_per_channel,
    dequantize_per_tensor,
    fake_quantize_learnable_per_channel,
    fake_quantize_learnable_per_tensor,
    fake_quantize_per_channel,
    fake_quantize_per_tensor,
    quant_range,
    quantize_per_channel,
    quantize_per_tensor,
    requantize,
)

__version__ = _C.__version__


def detected_isa() -> str:
    """The best kernel ISA level this CPU supports: scalar, avx2, avx_vnni, avx512, avx512_vnni or amx."""
    return _C.detected_isa()


def native_int8_saturates() -> bool:
    """True on x86 CPUs without VNNI (AVX2, or AVX-512 without VNNI). There PyTorch's own int8
    kernels (oneDNN, target="native") multiply with vpmaddubsw, which adds two uint8 x int8 products
    in saturating int16: with 8-bit activations (presets "onednn", "qnnpack") sums beyond 32767
    clip and outputs can be off by many steps. The "x86" preset (7-bit activations, the default)
    keeps them exact, and torchquantx's own kernels (target "quantx") are exact on every CPU."""
    return _C.detected_isa() in ("avx2", "avx512")


def active_isa() -> str:
    """The ISA level the kernels dispatch to now (TORCHQUANTX_ISA or set_max_isa may cap it)."""
    return _C.active_isa()


def set_max_isa(name: str) -> None:
    """Caps kernel dispatch at an ISA level; ``set_max_isa("scalar")`` forces the reference kernels."""
    _C.set_max_isa(name)


def reset_max_isa() -> None:
    """Undoes set_max_isa()."""
    _C.reset_max_isa()


def cached_memory() -> int:
    """Bytes the quantx ops' output-buffer pool holds free for the next outputs. Outputs of 64 KiB or
    more come from it, so a model run again on inputs of the same shape allocates nothing (no page
    faults on fresh memory); TORCHQUANTX_CACHE_MB caps it (default 512, 0 turns it off)."""
    return int(torch.ops.quantx.cached_memory())


def release_cached_memory() -> int:
    """Hands the pool's free blocks back to the allocator; returns how many bytes that was. Outputs
    still alive are not touched (they return to the pool when freed)."""
    return int(torch.ops.quantx.release_cached_memory())


__all__ = [
    "cached_memory", "release_cached_memory",
    "native_int8_saturates",
    "analysis", "analyze", "quantize_to_target", "report", "write_report",
    "adaround", "adaround_report", "bias_correction", "equalize", "ptq", "recovery",
    "disable_fake_quant", "disable_observer", "enable_fake_quant", "enable_observer", "freeze_bn_stats",
    "init_from_calibration", "learnable_qparams", "sync_observers",
    "prepare_qat", "qat", "calibrate", "calibrate_from_batchnorm", "calibration", "choose_calibration_methods",
    "calibration_method", "compare_methods", "convert", "prepare",
    "export_onnx", "read_qparams_json", "read_trt_cache", "write_qparams_json", "write_trt_cache",
    "set_calibration_method", "quantize_dynamic", "quantize_weights", "summary", "QuantStub", "DeQuantStub",
    "HistogramObserver", "MinMaxObserver", "MovingAverageMinMaxObserver", "MovingAveragePerChannelMinMaxObserver",
    "PerChannelMinMaxObserver", "active_isa", "choose_qparams", "dequantize_per_channel", "dequantize_per_tensor",
    "detected_isa", "fake_quantize_learnable_per_channel", "fake_quantize_learnable_per_tensor",
    "fake_quantize_per_channel", "fake_quantize_per_tensor", "library_path", "observers", "ops", "quant_range",
    "quantize_per_channel", "quantize_per_tensor", "requantize", "reset_max_isa", "set_max_isa",
]
