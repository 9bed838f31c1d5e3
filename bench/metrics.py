"""Numeric measures shared by the benchmark scripts (coverage.py, e2e.py)."""
import math

import torch


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio of approx against ref, in dB (inf when they are equal)."""
    noise = (ref.double() - approx.double()).pow(2).sum().item()
    signal = ref.double().pow(2).sum().item()
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf
