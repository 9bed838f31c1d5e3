"""Where a quantized model loses accuracy: per-layer error, sensitivity, mixed precision.

    report = torchquantx.analyze(model, loader)        # float vs simulated int8, layer by layer
    print(report.table())                              # SQNR, cosine, weight- vs activation-only error
    report.sensitivity                                 # layers ranked by how much int8 hurts the metric
    qmodel, plan = torchquantx.quantize_to_target(model, loader, metric, max_drop=0.5)

The result types are plain dataclasses so the report writer (torchquantx.report), the CLI and
user code can read them (and build them by hand in tests).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple


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
    clipped: float                  # fraction of calibration values outside `range`
    histogram: Tuple[List[float], float, float] = field(default_factory=lambda: ([], 0.0, 0.0))  # counts, lo, hi


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
