"""Shared fixtures of the torchquantx Python tests.

Run with ``PYTHONPATH=<repo> python3 -m pytest tests/python``. Every comparison of a kernel-backed
op runs once per ISA level the CPU supports (``isa`` fixture); the cap is always undone.
"""
from __future__ import annotations

import pytest
import torch

import torchquantx as tqx

# Levels the kernels have their own code for (avx_vnni / avx512_vnni only matter for GEMMs).
ISAS = ["scalar", "avx2", "avx512"]


@pytest.fixture(params=ISAS)
def isa(request):
    """Caps kernel dispatch at one ISA level for the test, skipping levels this CPU lacks."""
    name = request.param
    if not tqx._C.isa_supported(name):
        pytest.skip(f"CPU does not support {name} (best: {tqx.detected_isa()})")
    request.addfinalizer(tqx.reset_max_isa)
    tqx.set_max_isa(name)
    assert tqx.active_isa() == name
    return name


@pytest.fixture
def gen():
    """A seeded generator, so every test draws the same data on every run."""
    return torch.Generator().manual_seed(20240229)
