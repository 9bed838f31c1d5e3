"""Quantization ranges from (dtype, reduce_range, quant_min, quant_max), as torch.ao understands them."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

_SUPPORTED = (torch.quint8, torch.qint8, torch.qint32, torch.uint8, torch.int8, torch.int16, torch.int32,
              torch.quint4x2)


def resolve_range(owner: str, dtype: torch.dtype, reduce_range: bool, quant_min: Optional[int],
                  quant_max: Optional[int]) -> Tuple[int, int]:
    """Returns (quant_min, quant_max); custom bounds must lie inside the dtype's range."""
    if dtype not in _SUPPORTED:
        names = ", ".join(str(d) for d in _SUPPORTED)
        raise ValueError(f"{owner}: dtype should be one of {names}, got {dtype}")
    full_min, full_max = torch.ops.quantx.quant_range(dtype, False)
    if quant_min is None and quant_max is None:
        return tuple(torch.ops.quantx.quant_range(dtype, reduce_range))
    if quant_min is None or quant_max is None:
        raise ValueError(f"{owner}: give both quant_min and quant_max or neither, got quant_min={quant_min}, "
                         f"quant_max={quant_max}")
    if not (full_min <= quant_min <= quant_max <= full_max):
        raise ValueError(f"{owner}: quant_min/quant_max should satisfy {full_min} <= quant_min <= quant_max <= "
                         f"{full_max} for {dtype}, got quant_min={quant_min}, quant_max={quant_max}")
    if reduce_range:
        return quant_min // 2, quant_max // 2
    return quant_min, quant_max
