"""quantx's element-wise, pooling and copy operators (#4) against PyTorch's quantized operators, and
the quantx target lowering mul / cat / pools / activations / upsample onto them.

Bit-exact unless noted; the documented 1-LSB cases: quantized::mul broadcasting (PyTorch's
broadcast path rounds differently), hardswish and cat with requantize (PyTorch dequantizes with an
FMA, we per Note [Rounding]), and mean (PyTorch
averages in float, we in int32 per Note [Average pooling]).
"""
from __future__ import annotations

from typing import Tuple

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torchquantx as tqx


def q(gen: torch.Generator, shape: Tuple[int, ...], scale: float, zp: int, channels_last: bool = True) -> torch.Tensor:
    t = torch.quantize_per_tensor(torch.randn(*shape, generator=gen) * 2, scale, zp, torch.quint8)
    return t.contiguous(memory_format=torch.channels_last) if channels_last and len(shape) == 4 else t


def lsb(ours: torch.Tensor, theirs: torch.Tensor) -> int:
    assert ours.shape == theirs.shape
    assert ours.q_scale() == theirs.q_scale() and ours.q_zero_point() == theirs.q_zero_point()
    return int((ours.int_repr().int() - theirs.int_repr().int()).abs().max()) if ours.numel() else 0


# Channel counts below, at and above the vector widths; zero points at both extremes.
SHAPES = [(1, 3, 5, 7), (2, 16, 6, 6), (2, 35, 13, 11), (1, 130, 7, 7)]
QPARAMS = [(0.05, 128), (0.02, 0), (0.03, 255)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("qp", QPARAMS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_pools_equal_pytorch(isa, gen, shape, qp, channels_last):
    x = q(gen, shape, *qp, channels_last=channels_last)
    for k, s, p, dil, ceil in [(3, 2, 1, 1, False), (2, 2, 0, 1, True), (3, 1, 1, 2, False), (1, 1, 0, 1, False)]:
        ours = torch.ops.quantx.max_pool2d(x, [k, k], [s, s], [p, p], [dil, dil], ceil)
        assert lsb(ours, F.max_pool2d(x, k, s, p, dil, ceil_mode=ceil)) == 0
    if channels_last:  # PyTorch's NHWC kernel; its NCHW one rounds differently in the last bit
        for k, s, p, ceil, cip, div in [(3, 2, 1, False, True, None), (3, 2, 1, True, False, None),
                                        (2, 1, 0, False, True, 3)]:
            ours = torch.ops.quantx.avg_pool2d(x, [k, k], [s, s], [p, p], ceil, cip, div)
            theirs = F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=cip, divisor_override=div)
            # PyTorch's scalar channel tail (C % 8) rounds through 1 / (1 / multiplier).
            assert lsb(ours, theirs) <= (0 if shape[1] % 8 == 0 else 1)
        for size in [(1, 1), (3, 2), (shape[2], shape[3])]:
            ours = torch.ops.quantx.adaptive_avg_pool2d(x, list(size))
            assert lsb(ours, F.adaptive_avg_pool2d(x, size)) <= (0 if shape[1] % 8 == 0 else 1)
    for keepdim in (True, False):
        ours = torch.ops.quantx.mean(x, [2, 3], keepdim)
        assert lsb(ours, x.mean([2, 3], keepdim=keepdim)) <= 1
    assert lsb(torch.ops.quantx.mean(x, [1], False), x.mean([1])) <= 1  # not over H, W: PyTorch's math


@pytest.mark.parametrize("shape_a,shape_b", [((2, 35, 13, 11), (2, 35, 13, 11)), ((2, 35, 13, 11), (2, 35, 1, 1)),
                                             ((1, 16, 4, 4), (1, 16, 1, 1)), ((1, 16, 1, 1), (1, 16, 4, 4)),
                                             ((5, 3, 7, 7), (3, 1, 7)), ((4, 33), (4, 33))])
@pytest.mark.parametrize("relu", [False, True])
def test_mul_equals_quantized_mul(isa, gen, shape_a, shape_b, relu):
    qa, qb = q(gen, shape_a, 0.05, 110), q(gen, shape_b, 0.07, 140)
    ours = torch.ops.quantx.mul(qa, qb, 0.1, 90, relu)
    theirs = (torch.ops.quantized.mul_relu if relu else torch.ops.quantized.mul)(qa, qb, 0.1, 90)
    assert lsb(ours, theirs) <= (0 if shape_a == shape_b else 1)


@pytest.mark.parametrize("qp", QPARAMS)
def test_table_activations_equal_pytorch(isa, gen, qp):
    x = q(gen, (2, 35, 13, 11), *qp)
    assert lsb(torch.ops.quantx.hardswish(x, 0.04, 30), torch.ops.quantized.hardswish(x, 0.04, 30)) <= 1
    assert lsb(torch.ops.quantx.hardsigmoid(x, 1 / 256, 0), F.hardsigmoid(x)) == 0
    assert lsb(torch.ops.quantx.sigmoid(x, 1 / 256, 0), torch.sigmoid(x)) == 0
    assert lsb(torch.ops.quantx.tanh(x, 2 / 256, 128), torch.tanh(x)) == 0


def test_cat_upsample_dequantize_equal_pytorch(isa, gen):
    a, b = q(gen, (2, 5, 4, 3), 0.05, 120), q(gen, (2, 17, 4, 3), 0.03, 100)
    for dim in (1, -1, 0, 2):
        other = b if dim == 1 else q(gen, (2, 5, 4, 3), 0.03, 100)
        ours = torch.ops.quantx.cat([a, other], dim, 0.06, 110)
        assert lsb(ours, torch.ops.quantized.cat([a, other], dim, 0.06, 110)) <= 1
    same = torch.ops.quantx.cat([a, a], 1, a.q_scale(), a.q_zero_point())  # equal qparams: a copy
    assert torch.equal(same.int_repr(), torch.cat([a.int_repr(), a.int_repr()], 1))
    flat = q(gen, (3, 40), 0.05, 0, channels_last=False)
    assert lsb(torch.ops.quantx.cat([flat, flat], 1, 0.1, 255), torch.ops.quantized.cat([flat, flat], 1, 0.1, 255)) <= 1
    x = q(gen, (2, 35, 13, 11), 0.05, 128)
    for size, scale in [(None, [2.0, 2.0]), ([20, 30], None), (None, [1.7, 2.5]), ([13, 11], None), ([5, 4], None)]:
        ours = torch.ops.quantx.upsample_nearest2d(x, size, scale)
        theirs = F.interpolate(x, size=size, scale_factor=scale, mode="nearest")
        assert lsb(ours, theirs) == 0
    assert torch.equal(torch.ops.quantx.dequantize(x), x.dequantize())


def test_errors_name_op_argument_and_value(gen):
    x = q(gen, (1, 4, 5, 5), 0.1, 0)
    with pytest.raises(RuntimeError, match="quantx::mul: qb should be a per-tensor quint8 quantized tensor, got a float"):
        torch.ops.quantx.mul(x, torch.randn(1, 4, 5, 5), 0.1, 0)
    with pytest.raises(RuntimeError, match=r"quantx::mul: qa and qb should have broadcastable shapes, got \[1, 4, 5, 5\] and \[3\]"):
        torch.ops.quantx.mul(x, q(gen, (3,), 0.1, 0), 0.1, 0)
    with pytest.raises(RuntimeError, match="quantx::hardswish: zero_point should be within .* got 300"):
        torch.ops.quantx.hardswish(x, 0.1, 300)
    with pytest.raises(RuntimeError, match="quantx::max_pool2d: padding should be >= 0 and at most half the kernel size"):
        torch.ops.quantx.max_pool2d(x, [2, 2], [1, 1], [2, 2], [1, 1], False)
    with pytest.raises(RuntimeError, match=r"quantx::avg_pool2d: qx should be a 4-D \[N, C, H, W\] tensor, got shape \[4, 5\]"):
        torch.ops.quantx.avg_pool2d(q(gen, (4, 5), 0.1, 0), [2, 2], [], [0, 0], False, True, None)
    with pytest.raises(RuntimeError, match="quantx::cat: qxs should match in every dimension but 1"):
        torch.ops.quantx.cat([x, q(gen, (1, 4, 6, 5), 0.1, 0)], 1, 0.1, 0)
    with pytest.raises(RuntimeError, match=r"quantx::cat: dim should be in \[-4, 3\], got 4"):
        torch.ops.quantx.cat([x], 4, 0.1, 0)
    with pytest.raises(RuntimeError, match="quantx::upsample_nearest2d: exactly one of output_size and scale_factors"):
        torch.ops.quantx.upsample_nearest2d(x, None, None)
    with pytest.raises(RuntimeError, match="quantx::adaptive_avg_pool2d: output_size should be > 0, got"):
        torch.ops.quantx.adaptive_avg_pool2d(x, [0, 1])


def test_results_do_not_depend_on_thread_count(gen):
    x = q(gen, (4, 64, 28, 28), 0.05, 100)
    v = q(gen, (4, 64, 1, 1), 0.01, 3)
    runs = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append([torch.ops.quantx.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], False).int_repr(),
                         torch.ops.quantx.avg_pool2d(x, [3, 3], [1, 1], [1, 1], False, True, None).int_repr(),
                         torch.ops.quantx.adaptive_avg_pool2d(x, [1, 1]).int_repr(),
                         torch.ops.quantx.mul(x, v, 0.1, 90, False).int_repr(),
                         torch.ops.quantx.mul(x, x, 0.1, 90, True).int_repr(),
                         torch.ops.quantx.hardswish(x, 0.04, 30).int_repr(),
                         torch.ops.quantx.cat([x, x], 1, 0.07, 10).int_repr(),
                         torch.ops.quantx.upsample_nearest2d(x, None, [2.0, 2.0]).int_repr()])
    finally:
        torch.set_num_threads(before)
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))


class MixedNet(nn.Module):
    """mul (SE gate and elementwise), cat, max/avg/adaptive pools, mean, hardswish, hardsigmoid,
    sigmoid and nearest upsampling between int8 convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = nn.Conv2d(32, 24, 1)
        self.se = nn.Conv2d(24, 24, 1)
        self.c4 = nn.Conv2d(24, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardswish(self.c1(x))
        x = F.max_pool2d(x, 3, 2, 1)
        y = self.c2(x)
        x = torch.cat([x, y * torch.sigmoid(y)], 1)
        x = F.avg_pool2d(self.c3(x), 2)
        s = F.hardsigmoid(self.se(F.adaptive_avg_pool2d(x, 1)))
        x = F.interpolate(x * s, scale_factor=2.0, mode="nearest")
        x = self.c4(x)
        return self.fc(x.mean([2, 3]))


def test_quantx_target_runs_our_kernels_for_the_rest_of_the_network():
    torch.manual_seed(0)
    model = MixedNet().eval()
    data = [torch.randn(4, 3, 32, 32) for _ in range(4)]
    p = tqx.prepare(model)
    tqx.calibrate(p, data, progress=False)
    ours, native = tqx.convert(p, "quantx"), tqx.convert(p, "native")
    graph = str(ours.graph)
    for op in ["mul", "cat", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "mean", "hardswish", "hardsigmoid",
               "sigmoid", "upsample_nearest2d"]:
        assert f"quantx::{op}(" in graph, op
    for kind in ["quantized::mul", "quantized::cat", "quantized::hardswish", "aten::max_pool2d", "aten::avg_pool2d",
                 "aten::adaptive_avg_pool2d", "aten::mean", "aten::hardsigmoid", "aten::sigmoid",
                 "aten::upsample_nearest2d"]:
        assert kind not in graph, kind
    assert "quantized::mul" in str(native.graph) and "quantx::mul" not in str(native.graph)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        f, a, b = model(x), ours(x), native(x)
    err = float((a - b).abs().max())
    assert err <= 0.05 * float(f.abs().max()), err
    assert float((a - f).abs().max()) <= 0.15 * float(f.abs().max())
