"""Observers as scriptable nn.Modules over the C++ custom classes in torch.classes.quantx.

Each returns its input unchanged, accumulates statistics in C++, and turns them into qparams with
``calculate_qparams()``. Their state is saved and loaded with ``torch.jit.save`` / ``torch.jit.load``.
Constructor arguments follow ``torch.ao.quantization``'s observers, and so do the qparams.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor

from ._qrange import resolve_range
from .ops import EPS

_PER_TENSOR = (torch.per_tensor_affine, torch.per_tensor_symmetric)
_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric)


def _symmetric(owner: str, qscheme: torch.qscheme, allowed: tuple) -> bool:
    if qscheme not in allowed:
        names = ", ".join(str(q) for q in allowed)
        raise ValueError(f"{owner}: qscheme should be one of {names}, got {qscheme}")
    return qscheme in (torch.per_tensor_symmetric, torch.per_channel_symmetric)


def _check_averaging(owner: str, averaging_constant: float) -> None:
    if not 0.0 < averaging_constant <= 1.0:
        raise ValueError(f"{owner}: averaging_constant should be in (0, 1], got {averaging_constant}")


class MinMaxObserver(torch.nn.Module):
    """Running min/max of every batch (torch.ao.quantization.MinMaxObserver)."""

    def __init__(self, dtype: torch.dtype = torch.quint8, qscheme: torch.qscheme = torch.per_tensor_affine,
                 reduce_range: bool = False, quant_min: Optional[int] = None, quant_max: Optional[int] = None,
                 eps: float = EPS) -> None:
        super().__init__()
        self._setup(dtype, qscheme, _PER_TENSOR, reduce_range, quant_min, quant_max,
                    lambda lo, hi, sym: torch.classes.quantx.MinMaxObserver(lo, hi, sym, eps))

    def _setup(self, dtype: torch.dtype, qscheme: torch.qscheme, allowed: tuple, reduce_range: bool,
               quant_min: Optional[int], quant_max: Optional[int], make: Callable[[int, int, bool], Any]) -> None:
        """Validates the arguments and creates the C++ object with make(quant_min, quant_max, symmetric)."""
        name = type(self).__name__
        qmin, qmax = resolve_range(name, dtype, reduce_range, quant_min, quant_max)
        self.impl = make(qmin, qmax, _symmetric(name, qscheme, allowed))
        self.dtype = dtype

    def forward(self, x: Tensor) -> Tensor:
        return self.impl.forward(x)

    @torch.jit.export
    def calculate_qparams(self) -> Tuple[Tensor, Tensor]:
        return self.impl.calculate_qparams()

    @torch.jit.export
    def reset_min_max_vals(self) -> None:
        self.impl.reset()

    @torch.jit.export
    def observed_min(self) -> Tensor:
        """Smallest finite value seen (per channel for per-channel observers); +inf before any data."""
        return self.impl.min_val()

    @torch.jit.export
    def observed_max(self) -> Tensor:
        return self.impl.max_val()

    @torch.jit.export
    def nonfinite_count(self) -> int:
        """How many NaN/Inf values were seen (they are left out of the statistics)."""
        return self.impl.nonfinite_count()

    def extra_repr(self) -> str:
        return self.impl.describe()


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of per-batch min/max (torch.ao.quantization.MovingAverageMinMaxObserver)."""

    def __init__(self, averaging_constant: float = 0.01, dtype: torch.dtype = torch.quint8,
                 qscheme: torch.qscheme = torch.per_tensor_affine, reduce_range: bool = False,
                 quant_min: Optional[int] = None, quant_max: Optional[int] = None, eps: float = EPS) -> None:
        torch.nn.Module.__init__(self)
        _check_averaging(type(self).__name__, averaging_constant)
        self._setup(dtype, qscheme, _PER_TENSOR, reduce_range, quant_min, quant_max,
                    lambda lo, hi, sym: torch.classes.quantx.MovingAverageMinMaxObserver(
                        lo, hi, sym, averaging_constant, eps))


class PerChannelMinMaxObserver(MinMaxObserver):
    """Running min/max per slice along ``ch_axis`` (torch.ao.quantization.PerChannelMinMaxObserver)."""

    def __init__(self, ch_axis: int = 0, dtype: torch.dtype = torch.quint8,
                 qscheme: torch.qscheme = torch.per_channel_affine, reduce_range: bool = False,
                 quant_min: Optional[int] = None, quant_max: Optional[int] = None, eps: float = EPS) -> None:
        torch.nn.Module.__init__(self)
        self._setup(dtype, qscheme, _PER_CHANNEL, reduce_range, quant_min, quant_max,
                    lambda lo, hi, sym: torch.classes.quantx.PerChannelMinMaxObserver(ch_axis, lo, hi, sym, eps))
        self.ch_axis = ch_axis


class MovingAveragePerChannelMinMaxObserver(MinMaxObserver):
    """Moving average of per-channel min/max (torch.ao.quantization.MovingAveragePerChannelMinMaxObserver)."""

    def __init__(self, averaging_constant: float = 0.01, ch_axis: int = 0, dtype: torch.dtype = torch.quint8,
                 qscheme: torch.qscheme = torch.per_channel_affine, reduce_range: bool = False,
                 quant_min: Optional[int] = None, quant_max: Optional[int] = None, eps: float = EPS) -> None:
        torch.nn.Module.__init__(self)
        _check_averaging(type(self).__name__, averaging_constant)
        self._setup(dtype, qscheme, _PER_CHANNEL, reduce_range, quant_min, quant_max,
                    lambda lo, hi, sym: torch.classes.quantx.MovingAveragePerChannelMinMaxObserver(
                        ch_axis, lo, hi, sym, averaging_constant, eps))
        self.ch_axis = ch_axis


METHODS = ("minmax", "percentile", "entropy", "mse", "auto")


def check_method(owner: str, method: str, percentile: float) -> None:
    """Raises ValueError unless `method` is a range-setting method and `percentile` is in (0, 100]."""
    if method not in METHODS:
        raise ValueError(f"{owner}: method should be one of {', '.join(METHODS)}, got {method!r}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"{owner}: percentile should be in (0, 100] (e.g. 99.99), got {percentile}")


class HistogramObserver(MinMaxObserver):
    """A fixed-bin histogram whose range grows by exact power-of-two re-binning and that can merge.

    ``method`` says how ``calculate_qparams()`` turns the histogram into a clipping range:
    "minmax" (the exact observed range; default), "percentile" (the range holding ``percentile`` %
    of the values), "entropy" (TensorRT's minimum KL divergence), "mse" (minimum expected squared
    error, rounding and clipping together) or "auto" (per tensor, the best of those four by the
    histogram's estimate of the SQNR of this observer's tensor). The histogram keeps everything
    each method needs, so ``set_method`` can change it after calibration.
    """

    def __init__(self, bins: int = 2048, dtype: torch.dtype = torch.quint8,
                 qscheme: torch.qscheme = torch.per_tensor_affine, reduce_range: bool = False,
                 quant_min: Optional[int] = None, quant_max: Optional[int] = None, eps: float = EPS,
                 method: str = "minmax", percentile: float = 99.99) -> None:
        torch.nn.Module.__init__(self)
        if not 1 <= bins <= 1 << 24:
            raise ValueError(f"{type(self).__name__}: bins should be in [1, 16777216], got {bins}")
        check_method(type(self).__name__, method, percentile)
        self._setup(dtype, qscheme, _PER_TENSOR, reduce_range, quant_min, quant_max,
                    lambda lo, hi, sym: torch.classes.quantx.HistogramObserver(bins, lo, hi, sym, eps))
        self.impl.set_method(method, percentile)

    @torch.jit.export
    def set_method(self, method: str, percentile: float = 99.99) -> None:
        """Changes the range-setting method of calculate_qparams(); the statistics stay."""
        self.impl.set_method(method, percentile)

    @torch.jit.export
    def method(self) -> str:
        return self.impl.method()

    @torch.jit.export
    def percentile(self) -> float:
        return self.impl.percentile()

    @torch.jit.export
    def estimate(self, method: str, percentile: float = 99.99) -> Tuple[float, float, float, str]:
        """(lo, hi, estimated SQNR in dB, method that chose) of `method`, without switching to it."""
        return self.impl.estimate(method, percentile)

    @torch.jit.export
    def histogram(self) -> Tuple[Tensor, float, float]:
        """(counts as float64, lower edge, upper edge)."""
        return self.impl.histogram()

    @torch.jit.export
    def quantile(self, q: float) -> float:
        return self.impl.quantile(q)

    def merge(self, other: "HistogramObserver") -> None:
        """Adds another observer's histogram to this one."""
        if not isinstance(other, HistogramObserver):
            raise TypeError(f"HistogramObserver.merge: other should be a HistogramObserver, got {type(other).__name__}")
        self.impl.merge(other.impl)
