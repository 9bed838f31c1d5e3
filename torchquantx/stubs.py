"""QuantStub / DeQuantStub: eager-style markers of the region to quantize.

Without stubs, torchquantx.prepare quantizes every op it can. With them, only the values that flow
from a QuantStub and have not yet passed a DeQuantStub are quantized. torch.ao.quantization's own
stubs are recognised too (prepare swaps them for these on its private copy of the model).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor


class QuantStub(torch.nn.Module):
    """Marks where quantization starts; the identity in float."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantx.quant_stub(x)


class DeQuantStub(torch.nn.Module):
    """Marks where quantization ends; the identity in float."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantx.dequant_stub(x)


def _torch_stub_types():
    from torch.ao.quantization import DeQuantStub as TorchDeQuantStub, QuantStub as TorchQuantStub
    return TorchQuantStub, TorchDeQuantStub


def with_torchquantx_stubs(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself if it has no torch.ao stubs, else a copy with them replaced by ours."""
    tq, tdq = _torch_stub_types()
    if not any(isinstance(m, (tq, tdq)) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, tq):
                setattr(parent, name, QuantStub())
            elif isinstance(child, tdq):
                setattr(parent, name, DeQuantStub())
    return model
