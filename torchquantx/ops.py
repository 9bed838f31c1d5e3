"""Typed Python wrappers over torch.ops.quantx: quantize, dequantize, requantize, fake-quantize.

Quantized values are returned as plain integer tensors (uint8, int8, int16, int32) and qparams
travel separately; rounding follows Note [Rounding] (csrc/kernels/rounding.h), which equals
PyTorch's own quantizer.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

EPS = torch.finfo(torch.float32).eps


def quant_range(dtype: torch.dtype, reduce_range: bool = False) -> Tuple[int, int]:
    """(quant_min, quant_max) of a dtype: quint8 (0, 255), qint8 (-128, 127), int16, qint32, quint4x2 (0, 15)."""
    return tuple(torch.ops.quantx.quant_range(dtype, reduce_range))


def choose_qparams(min_val: Tensor, max_val: Tensor, quant_min: int, quant_max: int, symmetric: bool = False,
                   eps: float = EPS) -> Tuple[Tensor, Tensor]:
    """Scale (float32) and zero point (int64) for observed bounds; 0-d/1-element or 1-D (per channel)."""
    return torch.ops.quantx.choose_qparams(min_val, max_val, quant_min, quant_max, symmetric, eps)


def quantize_per_tensor(x: Tensor, scale: float, zero_point: int, dtype: torch.dtype = torch.quint8,
                        quant_min: Optional[int] = None, quant_max: Optional[int] = None) -> Tensor:
    return torch.ops.quantx.quantize_per_tensor(x, scale, zero_point, dtype, quant_min, quant_max)


def quantize_per_channel(x: Tensor, scales: Tensor, zero_points: Tensor, axis: int,
                         dtype: torch.dtype = torch.qint8, quant_min: Optional[int] = None,
                         quant_max: Optional[int] = None) -> Tensor:
    return torch.ops.quantx.quantize_per_channel(x, scales, zero_points, axis, dtype, quant_min, quant_max)


def dequantize_per_tensor(q: Tensor, scale: float, zero_point: int) -> Tensor:
    return torch.ops.quantx.dequantize_per_tensor(q, scale, zero_point)


def dequantize_per_channel(q: Tensor, scales: Tensor, zero_points: Tensor, axis: int) -> Tensor:
    return torch.ops.quantx.dequantize_per_channel(q, scales, zero_points, axis)


def requantize(acc: Tensor, multiplier: float, zero_point: int, dtype: torch.dtype = torch.quint8,
               quant_min: Optional[int] = None, quant_max: Optional[int] = None) -> Tensor:
    """int32 accumulators -> 8 bits: clamp(round(acc * multiplier) + zero_point)."""
    return torch.ops.quantx.requantize(acc, multiplier, zero_point, dtype, quant_min, quant_max)


def fake_quantize_per_tensor(x: Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int) -> Tensor:
    """Quantize-dequantize in float; the backward pass is the straight-through estimator."""
    return torch.ops.quantx.fake_quantize_per_tensor(x, scale, zero_point, quant_min, quant_max)


def fake_quantize_per_channel(x: Tensor, scale: Tensor, zero_point: Tensor, axis: int, quant_min: int,
                              quant_max: int) -> Tensor:
    return torch.ops.quantx.fake_quantize_per_channel(x, scale, zero_point, axis, quant_min, quant_max)


def fake_quantize_learnable_per_tensor(x: Tensor, scale: Tensor, zero_point: Tensor, quant_min: int,
                                       quant_max: int, grad_factor: float = 1.0) -> Tensor:
    """LSQ fake quantization: gradients flow to x (STE), scale and zero_point (one-element float tensors)."""
    return torch.ops.quantx.fake_quantize_learnable_per_tensor(x, scale, zero_point, quant_min, quant_max,
                                                               grad_factor)


def fake_quantize_learnable_per_channel(x: Tensor, scale: Tensor, zero_point: Tensor, axis: int, quant_min: int,
                                        quant_max: int, grad_factor: float = 1.0) -> Tensor:
    return torch.ops.quantx.fake_quantize_learnable_per_channel(x, scale, zero_point, axis, quant_min, quant_max,
                                                                grad_factor)
