"""Kernel ISA selection: detection, the TORCHQUANTX_ISA variable and set_max_isa."""
import os
import subprocess
import sys

import pytest
import torch

import torchquantx as tqx

LEVELS = ["scalar", "avx2", "avx_vnni", "avx512", "avx512_vnni", "amx"]


def run_with_env(code, **env):
    return subprocess.run([sys.executable, "-c", code], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, **env})


def test_detected_level_is_known_and_supported():
    assert tqx.detected_isa() in LEVELS
    assert tqx._C.isa_supported(tqx.detected_isa())
    assert tqx._C.isa_supported("scalar")


def test_set_max_isa_caps_and_resets():
    try:
        tqx.set_max_isa("scalar")
        assert tqx.active_isa() == "scalar"
        x = torch.randn(1000)
        scalar = tqx.quantize_per_tensor(x, 0.01, 128, torch.quint8)
    finally:
        tqx.reset_max_isa()
    assert tqx.active_isa() == tqx.detected_isa()
    assert torch.equal(tqx.quantize_per_tensor(x, 0.01, 128, torch.quint8), scalar)
    with pytest.raises(ValueError, match="ISA name should be one of"):
        tqx.set_max_isa("sse9")


def test_environment_variable_caps_dispatch():
    res = run_with_env("import torchquantx as t; print(t.active_isa())", TORCHQUANTX_ISA="scalar")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "scalar"


def test_environment_variable_with_bad_value_gives_clear_error():
    res = run_with_env("import torch, torchquantx as t; t.quantize_per_tensor(torch.ones(3), 1.0, 0, torch.quint8)",
                       TORCHQUANTX_ISA="avx9000")
    assert res.returncode != 0
    assert "ISA name should be one of scalar, avx2, avx_vnni, avx512, avx512_vnni, amx, got 'avx9000'" in res.stderr
