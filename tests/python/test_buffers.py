"""The quantx ops' output-buffer pool (Note [Output buffers] in csrc/ops/buffers.cpp): a freed output's
block serves the next output of about its size, the bytes are the op's, and the pool can be emptied,
capped and turned off."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

import torchquantx  # noqa: F401  (registers the quantx ops)


def _conv(cin: int, cout: int) -> torch.ScriptObject:
    g = torch.Generator().manual_seed(cin * 100 + cout)
    w = torch.randint(-128, 128, (cout, cin, 3, 3), dtype=torch.int8, generator=g)
    return torch.ops.quantx.conv_prepack(w, torch.rand(cout, generator=g) * 0.01 + 0.001, None, [1, 1], [1, 1], [1, 1], 1)


def _input(hw: int, channels: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(hw)
    x = torch.rand(1, channels, hw, hw, generator=g)
    return torch.quantize_per_tensor(x, 0.02, 3, torch.quint8).contiguous(memory_format=torch.channels_last)


def test_a_freed_output_serves_the_next_output_of_its_size_with_the_ops_bytes():
    conv, qx = _conv(8, 32), _input(64)  # output 1x32x64x64: 128 KiB
    torch.ops.quantx.release_cached_memory()
    y = torch.ops.quantx.conv2d(qx, conv, 0.1, 7, False, 255)
    ptr = y.data_ptr()
    expected = y.int_repr().clone()
    del y
    assert torch.ops.quantx.cached_memory() >= 32 * 64 * 64
    again = torch.ops.quantx.conv2d(qx, conv, 0.1, 7, False, 255)
    assert again.data_ptr() == ptr
    assert torch.equal(again.int_repr(), expected)
    # A tensor like at::_empty_affine_quantized's: the scale kept as the double given (0.1 is not a
    # float32), channels last, the shape, and usable by PyTorch's own ops.
    assert again.q_scale() == 0.1 and again.q_zero_point() == 7
    assert again.shape == (1, 32, 64, 64) and again.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(again.dequantize(), (expected.float() - 7) * 0.1)
    # The pooled output is what a fresh allocation gives: the same bytes with the pool emptied first.
    del again
    torch.ops.quantx.release_cached_memory()
    fresh = torch.ops.quantx.conv2d(qx, conv, 0.1, 7, False, 255)
    assert torch.equal(fresh.int_repr(), expected)


def test_a_block_serves_requests_down_to_four_fifths_of_its_size_only():
    conv = _conv(8, 32)
    torch.ops.quantx.release_cached_memory()
    y = torch.ops.quantx.conv2d(_input(64), conv, 0.1, 7, False, 255)  # 131072 bytes
    ptr = y.data_ptr()
    del y
    smaller = torch.ops.quantx.conv2d(_input(60), conv, 0.1, 7, False, 255)  # 115200 bytes: 0.88 of the block
    assert smaller.data_ptr() == ptr and smaller.shape == (1, 32, 60, 60)
    del smaller
    much_smaller = torch.ops.quantx.conv2d(_input(56), conv, 0.1, 7, False, 255)  # 100352 bytes: 0.77
    assert much_smaller.data_ptr() != ptr
    assert torch.ops.quantx.cached_memory() == 131072  # the block stayed in the pool


def test_release_cached_memory_hands_the_free_blocks_back():
    conv, qx = _conv(8, 32), _input(64)
    torch.ops.quantx.release_cached_memory()
    outputs = [torch.ops.quantx.conv2d(qx, conv, 0.1, 7, False, 255) for _ in range(3)]
    del outputs
    held = torch.ops.quantx.cached_memory()
    assert held == 3 * 131072
    assert torchquantx.cached_memory() == held
    assert torchquantx.release_cached_memory() == held
    assert torch.ops.quantx.cached_memory() == 0 and torchquantx.release_cached_memory() == 0


def _run_with_cache_mb(value: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        """
        import torch, torchquantx
        w = torch.randint(-128, 128, (32, 8, 3, 3), dtype=torch.int8)
        conv = torch.ops.quantx.conv_prepack(w, torch.full((32,), 0.01), None, [1, 1], [1, 1], [1, 1], 1)
        def out(hw):
            x = torch.quantize_per_tensor(torch.rand(1, 8, hw, hw), 0.02, 3, torch.quint8)
            return torch.ops.quantx.conv2d(x.contiguous(memory_format=torch.channels_last), conv, 0.1, 7)
        small, big = out(64), out(256)  # 128 KiB and 2 MiB
        del small, big
        print(torch.ops.quantx.cached_memory())
        """
    )
    env = dict(os.environ, TORCHQUANTX_CACHE_MB=value)
    return subprocess.run([sys.executable, "-c", code], env=env, text=True, capture_output=True, timeout=300)


def test_the_pool_is_capped_and_can_be_turned_off():
    assert _run_with_cache_mb("512").stdout.split() == [str(131072 + 2097152)]
    assert _run_with_cache_mb("1").stdout.split() == ["131072"]  # the 2 MiB block is over the cap: freed
    assert _run_with_cache_mb("0").stdout.split() == ["0"]


def test_a_bad_cache_setting_is_a_clear_error():
    res = _run_with_cache_mb("lots")
    assert res.returncode != 0
    assert "TORCHQUANTX_CACHE_MB should be a whole number of MiB >= 0" in res.stderr
    assert "got 'lots'" in res.stderr
