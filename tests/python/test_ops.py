"""quantx::quantize_* / dequantize_* / requantize / quant_range / choose_qparams and the ISA switch.

Oracles: PyTorch's own quantizer (``torch.quantize_per_tensor(...).int_repr()`` etc.) wherever it
defines the result, and otherwise ``ref_quantize`` below, a literal torch-float32 transcription of
Note [Rounding]: q = clamp(nearbyint(x * float32(1 / float32(scale))) + zero_point, qmin, qmax).
Documented intentional differences from torch (+Inf, |x / scale| beyond int64) are tested against
the rule only.
"""
from __future__ import annotations

import math

import pytest
import torch

import torchquantx as tqx

F32 = torch.float32
QUANT_DTYPES = [torch.quint8, torch.qint8, torch.qint32]
STORAGE = {torch.quint8: torch.uint8, torch.qint8: torch.int8, torch.qint32: torch.int32,
           torch.quint4x2: torch.uint8, torch.uint8: torch.uint8, torch.int8: torch.int8,
           torch.int16: torch.int16, torch.int32: torch.int32}
FULL_RANGE = {torch.quint8: (0, 255), torch.qint8: (-128, 127), torch.qint32: (-2 ** 31, 2 ** 31 - 1),
              torch.quint4x2: (0, 15), torch.uint8: (0, 255), torch.int8: (-128, 127),
              torch.int16: (-32768, 32767), torch.int32: (-2 ** 31, 2 ** 31 - 1)}


# --------------------------------------------------------------------------------------------
# Independent references (plain torch float32 arithmetic, no torchquantx code involved).

def f32(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F32)


def ref_quantize(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int,
                 out_dtype: torch.dtype, inv_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Note [Rounding]; zero_point is added in float32 (what torch does for qint32)."""
    inv = (f32(1.0) / f32(scale)) if inv_scale is None else inv_scale
    r = torch.round(x.to(F32) * inv)  # float32 product, round half to even
    t = (r + f32(float(zero_point))).double()
    t = torch.where(torch.isnan(t), torch.full_like(t, qmin), t.clamp(qmin, qmax))
    return t.to(torch.int64).to(out_dtype)


def ref_dequantize(q: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    # Note [Rounding]: the difference in integers (int64, exact), then one conversion to float32.
    return (q.to(torch.int64) - zero_point).to(F32) * f32(scale)


def ref_requantize(acc: torch.Tensor, multiplier: float, zero_point: int, qmin: int, qmax: int,
                   out_dtype: torch.dtype) -> torch.Tensor:
    return ref_quantize(acc.to(F32), 1.0, zero_point, qmin, qmax, out_dtype, inv_scale=f32(multiplier))


def torch_q(x, scale, zp, dtype):
    return torch.quantize_per_tensor(x, scale, zp, dtype).int_repr()


def test_references_agree_with_hand_computed_values():
    # Guards the oracles themselves: ties to even, saturation, NaN, float32 zero-point addition.
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 300.0, -300.0, float("nan")])
    assert ref_quantize(x, 1.0, 0, -128, 127, torch.int8).tolist() == [0, 2, 2, 0, -2, 127, -128, -128]
    assert ref_quantize(x, 1.0, 3, 0, 255, torch.uint8).tolist() == [3, 5, 5, 3, 1, 255, 0, 0]
    # 2**24 + 1 is not a float32: the int32 zero point is added in float32 and lands on 2**24.
    assert ref_quantize(torch.tensor([2.0 ** 24]), 1.0, 1, -2 ** 31, 2 ** 31 - 1, torch.int32).item() == 2 ** 24
    assert ref_dequantize(torch.tensor([0, 10, 255], dtype=torch.uint8), 0.5, 10).tolist() == [-5.0, 0.0, 122.5]
    acc = torch.tensor([1, 3, 5, -1, -3, 1000], dtype=torch.int32)
    assert ref_requantize(acc, 0.5, 0, -128, 127, torch.int8).tolist() == [0, 2, 2, 0, -2, 127]


# --------------------------------------------------------------------------------------------
# Data

def make_input(gen, n: int, scale: float, zp: int, qmin: int, qmax: int) -> torch.Tensor:
    """Random values over (and beyond) the range, exact and near ties, saturating values, NaN."""
    span = min(qmax - qmin, 4096) * scale
    center = (min(max(zp, -2048), 2048) if qmin < 0 else 0) * scale
    parts = [
        (torch.rand(n, generator=gen) - 0.5) * 1.5 * span - center,
        (torch.arange(-40, 40, dtype=torch.float64) + 0.5).mul(scale).float(),  # ties / near ties
        torch.tensor([1e6, -1e6, 1e5, -1e5, 0.0, -0.0, scale / 2, -scale / 2, 1.5 * scale, 2.5 * scale,
                      float("nan"), 3.4e4, -3.4e4]),
    ]
    x = torch.cat(parts)
    # next floats around the ties
    ties = parts[1]
    x = torch.cat([x, torch.nextafter(ties, torch.full_like(ties, math.inf)),
                   torch.nextafter(ties, torch.full_like(ties, -math.inf))])
    return x[torch.randperm(x.numel(), generator=gen)]


# --------------------------------------------------------------------------------------------
# 1. quantize_per_tensor

SCALES = [0.1, 1 / 3, 1e-3, 7.5, 0.25, 1.0, 2.0, 0.0123]


def zero_points_for(dtype):
    lo, hi = FULL_RANGE[dtype]
    if dtype == torch.qint32:
        return [lo, hi, 0, -7, 1000]
    return [lo, hi, (lo + hi + 1) // 2, lo + 1]


@pytest.mark.parametrize("dtype", QUANT_DTYPES, ids=str)
@pytest.mark.parametrize("scale", SCALES)
def test_quantize_per_tensor_matches_torch(isa, gen, dtype, scale):
    lo, hi = FULL_RANGE[dtype]
    for zp in zero_points_for(dtype):
        x = make_input(gen, 300, scale, zp, lo, hi)
        got = tqx.quantize_per_tensor(x, scale, zp, dtype)
        assert got.dtype == STORAGE[dtype] and got.shape == x.shape
        expected = torch_q(x, scale, zp, dtype)
        assert torch.equal(got, expected), f"zp={zp}: first mismatches at {(got != expected).nonzero()[:5]}"
        assert torch.equal(got, ref_quantize(x, scale, zp, lo, hi, STORAGE[dtype]))


def test_quantize_exact_ties_round_half_to_even(isa):
    # scale 0.5: x * 2 is exact, so these are true ties; expected values by hand.
    x = torch.tensor([0.25, 0.75, 1.25, -0.25, -0.75, -1.25, 63.25, -64.25] * 5)  # 40: body and tail
    expected = torch.tensor([0, 2, 2, 0, -2, -2, 126, -128] * 5, dtype=torch.int8)
    assert torch.equal(tqx.quantize_per_tensor(x, 0.5, 0, torch.qint8), expected)
    assert torch.equal(tqx.quantize_per_tensor(x, 0.5, 1, torch.qint8), (expected.int() + 1).clamp(-128, 127).to(torch.int8))


@pytest.mark.parametrize("dtype", QUANT_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(0,), (1,), (15,), (16,), (17,), (33,), (64,), (1000,), (1, 3, 224, 224)],
                         ids=lambda s: "x".join(map(str, s)))
def test_quantize_per_tensor_sizes(isa, gen, dtype, shape):
    x = torch.randn(shape, generator=gen) * 3
    zp = {torch.quint8: 120, torch.qint8: -3, torch.qint32: 11}[dtype]
    got = tqx.quantize_per_tensor(x, 0.02, zp, dtype)
    assert got.shape == x.shape
    assert torch.equal(got, torch_q(x, 0.02, zp, dtype))


NONCONTIG = {
    "transposed": lambda t: t.reshape(37, 45).t(),
    "sliced": lambda t: t[::3],
    "permuted4d": lambda t: t[:1620].reshape(3, 4, 9, 15).permute(0, 2, 3, 1),
    "narrowed": lambda t: t.reshape(37, 45)[5:30, 7:40],
    "expanded": lambda t: t[:17].reshape(17, 1).expand(17, 9),
}


@pytest.mark.parametrize("view", list(NONCONTIG), ids=str)
@pytest.mark.parametrize("dtype", QUANT_DTYPES, ids=str)
def test_quantize_per_tensor_noncontiguous(isa, gen, view, dtype):
    x = NONCONTIG[view](torch.randn(37 * 45, generator=gen) * 2)
    assert not x.is_contiguous()
    got = tqx.quantize_per_tensor(x, 0.015, 0, dtype)
    assert got.shape == x.shape
    assert torch.equal(got, torch_q(x, 0.015, 0, dtype))
    assert torch.equal(got, tqx.quantize_per_tensor(x.contiguous(), 0.015, 0, dtype))


@pytest.mark.parametrize("dtype,qmin,qmax,zp", [
    (torch.quint8, 0, 15, 3), (torch.quint8, 3, 200, 100), (torch.quint8, 0, 127, 127),
    (torch.qint8, -8, 7, 0), (torch.qint8, -100, 50, -100), (torch.qint8, -64, 63, 63),
])
def test_quantize_custom_range_equals_torch_clamped(isa, gen, dtype, qmin, qmax, zp):
    # Clamping torch's full-range result into the sub-range is an independent oracle.
    for scale in (0.1, 1 / 3, 0.007):
        x = make_input(gen, 200, scale, zp, qmin, qmax)
        got = tqx.quantize_per_tensor(x, scale, zp, dtype, qmin, qmax)
        assert torch.equal(got, torch_q(x, scale, zp, dtype).clamp(qmin, qmax))
        assert int(got.min()) >= qmin and int(got.max()) <= qmax


@pytest.mark.parametrize("dtype,qmin,qmax,zp", [
    (torch.int16, None, None, 0), (torch.int16, None, None, -32768), (torch.int16, None, None, 1234),
    (torch.int16, -1000, 1000, 5), (torch.quint4x2, None, None, 0), (torch.quint4x2, None, None, 8),
    (torch.quint4x2, 2, 9, 2), (torch.uint8, None, None, 7), (torch.int8, None, None, -7),
    (torch.int32, None, None, -99), (torch.int32, -5000, 5000, 0),
])
def test_quantize_other_dtypes_follow_rule(isa, gen, dtype, qmin, qmax, zp):
    lo, hi = FULL_RANGE[dtype]
    rmin, rmax = (lo, hi) if qmin is None else (qmin, qmax)
    for scale in (0.1, 1 / 3, 1e-3, 7.5):
        x = make_input(gen, 300, scale, zp, rmin, rmax)
        got = tqx.quantize_per_tensor(x, scale, zp, dtype, qmin, qmax)
        assert got.dtype == STORAGE[dtype]
        assert torch.equal(got, ref_quantize(x, scale, zp, rmin, rmax, STORAGE[dtype]))


@pytest.mark.parametrize("dtype", QUANT_DTYPES + [torch.int16, torch.quint4x2], ids=str)
def test_quantize_nonfinite_saturates(isa, dtype):
    # Documented: NaN -> qmin (as torch); +Inf and |x/scale| >= 2**63 -> qmax / qmin (torch: UB).
    lo, hi = FULL_RANGE[dtype]
    vals = [float("nan"), float("inf"), -float("inf"), 3e38, -3e38, 1e30]
    x = torch.tensor(vals * 7)  # 42 elements: SIMD body and tail
    got = tqx.quantize_per_tensor(x, 0.1, 0 if lo < 0 else 1, dtype).to(torch.int64)
    assert got.tolist() == [lo, hi, lo, hi, lo, hi] * 7


def test_quantize_wrapper_defaults():
    x = torch.tensor([-1.0, 0.0, 1.0])
    assert tqx.quantize_per_tensor(x, 0.5, 2).dtype == torch.uint8  # default quint8
    assert tqx.quantize_per_tensor(x, 0.5, 2).tolist() == [0, 2, 4]


# --------------------------------------------------------------------------------------------
# 2. per channel

PC_CASES = [((5, 7, 9), 0), ((5, 7, 9), 1), ((5, 7, 9), 2), ((5, 7, 9), -1), ((5, 7, 9), -3),
            ((3, 40), 1), ((33,), 0), ((2, 3, 4, 35), 3), ((2, 16, 3, 3), 1)]


def channel_qparams(gen, channels, dtype, int32_zp=False):
    lo, hi = FULL_RANGE[dtype]
    # Scales drawn in float32 so that torch's float64 per-channel scales hold the same values.
    scales = (torch.rand(channels, generator=gen) * 0.1 + 1e-3).float()
    scales[0] = 1 / 3
    if dtype == torch.qint32:
        zps = torch.randint(-1000, 1000, (channels,), generator=gen)
    else:
        zps = torch.randint(lo, hi + 1, (channels,), generator=gen)
        zps[-1] = hi
        zps[channels // 2] = lo
    return scales, zps.to(torch.int32 if int32_zp else torch.int64)


@pytest.mark.parametrize("dtype", QUANT_DTYPES, ids=str)
@pytest.mark.parametrize("shape,axis", PC_CASES, ids=lambda v: str(v))
def test_quantize_dequantize_per_channel_match_torch(isa, gen, dtype, shape, axis):
    x = torch.randn(shape, generator=gen) * 2
    x.view(-1)[:4] = torch.tensor([1e6, -1e6, float("nan"), 0.0])
    channels = shape[axis]
    for int32_zp in (False, True):
        scales, zps = channel_qparams(gen, channels, dtype, int32_zp)
        got = tqx.quantize_per_channel(x, scales, zps, axis, dtype)
        # torch only accepts axis in [0, dim)
        tq = torch.quantize_per_channel(x, scales.double(), zps.long(), axis % x.dim(), dtype)
        assert torch.equal(got, tq.int_repr())
        # bit-exact because the scales are float32 values (see the test below otherwise)
        assert torch.equal(tqx.dequantize_per_channel(got, scales, zps, axis), torch.dequantize(tq))


def test_per_channel_noncontiguous(isa, gen):
    base = torch.randn(6, 8, 10, generator=gen)
    x = base.permute(2, 0, 1)  # channel axis 1 has 6 entries
    scales, zps = channel_qparams(gen, 6, torch.qint8)
    got = tqx.quantize_per_channel(x, scales, zps, 1, torch.qint8)
    assert torch.equal(got, torch.quantize_per_channel(x, scales.double(), zps, 1, torch.qint8).int_repr())
    # non-contiguous qparams vectors too
    s2 = torch.stack([scales, scales], 1)[:, 0]
    assert not s2.is_contiguous()
    assert torch.equal(tqx.quantize_per_channel(x, s2, zps, 1, torch.qint8), got)
    q_nc = got.transpose(0, 2)
    assert torch.equal(tqx.dequantize_per_channel(q_nc, scales, zps, 1),
                       tqx.dequantize_per_channel(q_nc.contiguous(), scales, zps, 1))


def test_dequantize_per_channel_float64_scales_documented_difference(gen):
    # torch multiplies by the float64 scale; ours uses float32(scale) (Note [Rounding]). Results are
    # bit-exact with the float32 rule and within one float32 rounding of torch's.
    x = torch.randn(5, 7, 9, generator=gen) * 3
    scales = torch.rand(7, dtype=torch.float64, generator=gen) * 0.2 + 1e-3
    zps = torch.randint(-20, 20, (7,), generator=gen)
    tq = torch.quantize_per_channel(x, scales, zps, 1, torch.qint8)
    got = tqx.dequantize_per_channel(tq.int_repr(), scales, zps, 1)
    ref = (tq.int_repr().float() - zps.float().view(1, 7, 1)) * scales.float().view(1, 7, 1)
    assert torch.equal(got, ref)
    expected = torch.dequantize(tq)
    assert torch.all((got - expected).abs() <= expected.abs() * 2.0 ** -23)


@pytest.mark.parametrize("dtype,qmin,qmax", [(torch.int16, None, None), (torch.quint4x2, None, None),
                                              (torch.quint8, 10, 50), (torch.qint8, -8, 7)])
def test_per_channel_other_dtypes_follow_rule(isa, gen, dtype, qmin, qmax):
    lo, hi = FULL_RANGE[dtype] if qmin is None else (qmin, qmax)
    x = torch.randn(4, 6, 21, generator=gen) * 2
    scales = (torch.rand(6, generator=gen) * 0.3 + 0.01)
    zps = torch.randint(lo, hi + 1, (6,), generator=gen)
    got = tqx.quantize_per_channel(x, scales, zps, 1, dtype, qmin, qmax)
    expected = torch.stack([ref_quantize(x[:, c], float(scales[c]), int(zps[c]), lo, hi, STORAGE[dtype])
                            for c in range(6)], 1)
    assert torch.equal(got, expected)
    deq = tqx.dequantize_per_channel(got, scales, zps, 1)
    expected = torch.stack([ref_dequantize(got[:, c], float(scales[c]), int(zps[c])) for c in range(6)], 1)
    assert torch.equal(deq, expected)


# --------------------------------------------------------------------------------------------
# 3. dequantize_per_tensor

@pytest.mark.parametrize("dtype", QUANT_DTYPES, ids=str)
@pytest.mark.parametrize("scale", [0.1, 1 / 3, 1e-3, 7.5, 0.0123])
def test_dequantize_per_tensor_matches_torch(isa, gen, dtype, scale):
    lo, hi = FULL_RANGE[dtype]
    # qint32: moderate zero points here; large ones in the test below
    zps = [0, -7, 1000, 100000] if dtype == torch.qint32 else zero_points_for(dtype)
    for zp in zps:
        for n in (1, 7, 31, 77, 1000):
            x = (torch.rand(n, generator=gen) - 0.5) * scale * min(hi - lo, 1 << 20)
            tq = torch.quantize_per_tensor(x, scale, zp, dtype)
            got = tqx.dequantize_per_tensor(tq.int_repr(), scale, zp)
            assert got.dtype == F32
            assert torch.equal(got, torch.dequantize(tq))


def test_dequantize_qint32_large_zero_point_matches_torch():
    for zp in (2 ** 31 - 1, -2 ** 31, 2 ** 24 + 1):
        x = torch.tensor([-0.1, 0.0, 0.1, 25.0, -25.0])
        tq = torch.quantize_per_tensor(x, 0.1, zp, torch.qint32)
        assert torch.equal(tqx.dequantize_per_tensor(tq.int_repr(), 0.1, zp), torch.dequantize(tq)), zp


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32], ids=str)
def test_dequantize_all_values_follow_rule(isa, dtype):
    lo, hi = FULL_RANGE[dtype]
    if dtype == torch.int32:
        q = torch.cat([torch.arange(-70000, 70000), torch.tensor([lo, hi, lo + 1, hi - 1, 2 ** 24 + 1])])
    else:
        q = torch.arange(lo, hi + 1)
    q = q.to(dtype)
    for scale, zp in ((0.1, 0), (1 / 3, lo), (7.5, hi), (1e-3, (lo + hi) // 2)):
        assert torch.equal(tqx.dequantize_per_tensor(q, scale, zp), ref_dequantize(q, scale, zp))
        assert torch.equal(tqx.dequantize_per_tensor(q[::2], scale, zp), ref_dequantize(q[::2], scale, zp))


def test_quantize_dequantize_round_trip_error_within_half_step(isa, gen):
    x = (torch.rand(5000, generator=gen) - 0.5) * 2.0
    for dtype, zp in ((torch.quint8, 128), (torch.qint8, 0)):
        scale = 2.0 / 250
        back = tqx.dequantize_per_tensor(tqx.quantize_per_tensor(x, scale, zp, dtype), scale, zp)
        assert float((back - x).abs().max()) <= scale / 2 * (1 + 1e-5)


# --------------------------------------------------------------------------------------------
# 4. requantize

@pytest.mark.parametrize("dtype", [torch.quint8, torch.qint8, torch.uint8, torch.int8], ids=str)
@pytest.mark.parametrize("multiplier", [1e-3, 0.0123, 1 / 3, 0.5, 2.0, 3.7e-6])
def test_requantize_follows_rule(isa, gen, dtype, multiplier):
    lo, hi = FULL_RANGE[dtype]
    span = int(min(2 ** 30, 400 / multiplier))
    acc = torch.cat([
        torch.randint(-span, span, (1000,), generator=gen),
        torch.tensor([0, 1, -1, 2 ** 31 - 1, -2 ** 31, 2 ** 24 + 1, -(2 ** 24 + 3), 16777217, 123456789]),
        torch.arange(-40, 40),
    ]).to(torch.int32)
    for zp in (lo, hi, (lo + hi + 1) // 2):
        for n in (acc.numel(), 37, 5):
            a = acc[-n:]
            got = tqx.requantize(a, multiplier, zp, dtype)
            assert got.dtype == STORAGE[dtype]
            assert torch.equal(got, ref_requantize(a, multiplier, zp, lo, hi, STORAGE[dtype]))
    # custom range and a non-contiguous accumulator
    a2 = acc[:1000].reshape(40, 25).t()
    got = tqx.requantize(a2, multiplier, lo + 2, dtype, lo + 2, hi - 3)
    assert torch.equal(got, ref_requantize(a2, multiplier, lo + 2, lo + 2, hi - 3, STORAGE[dtype]))


def test_requantize_hand_values(isa):
    acc = torch.tensor([1, 3, 5, -1, -3, 254, 255, 1000, -1000] * 4, dtype=torch.int32)
    assert tqx.requantize(acc, 0.5, 0, torch.qint8).tolist() == [0, 2, 2, 0, -2, 127, 127, 127, -128] * 4
    assert tqx.requantize(acc, 0.5, 10, torch.quint8).tolist() == [10, 12, 12, 10, 8, 137, 138, 255, 0] * 4


# --------------------------------------------------------------------------------------------
# quant_range / choose_qparams

@pytest.mark.parametrize("dtype,reduce,expected", [
    (torch.quint8, False, (0, 255)), (torch.quint8, True, (0, 127)), (torch.uint8, False, (0, 255)),
    (torch.qint8, False, (-128, 127)), (torch.qint8, True, (-64, 63)), (torch.int8, True, (-64, 63)),
    (torch.int16, False, (-32768, 32767)), (torch.qint32, False, (-2 ** 31, 2 ** 31 - 1)),
    (torch.qint32, True, (-2 ** 31, 2 ** 31 - 1)), (torch.int32, False, (-2 ** 31, 2 ** 31 - 1)),
    (torch.quint4x2, False, (0, 15)),
])
def test_quant_range(dtype, reduce, expected):
    assert tqx.quant_range(dtype, reduce) == expected


def torch_qparams(min_val, max_val, dtype, symmetric, quant_min=None, quant_max=None):
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver
    per_channel = min_val.dim() == 1 and min_val.numel() > 1
    if per_channel:
        obs = PerChannelMinMaxObserver(0, dtype=dtype, quant_min=quant_min, quant_max=quant_max,
                                       qscheme=torch.per_channel_symmetric if symmetric else torch.per_channel_affine)
    else:
        obs = MinMaxObserver(dtype=dtype, quant_min=quant_min, quant_max=quant_max,
                             qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine)
    obs.min_val = min_val.clone()
    obs.max_val = max_val.clone()
    return obs.calculate_qparams()


@pytest.mark.parametrize("dtype", [torch.quint8, torch.qint8], ids=str)
@pytest.mark.parametrize("symmetric", [False, True])
def test_choose_qparams_matches_torch(gen, dtype, symmetric):
    lo, hi = FULL_RANGE[dtype]
    mins = torch.cat([-torch.rand(60, generator=gen) * torch.logspace(-6, 3, 60), torch.tensor([0.0, 0.0, 1.0, -5.0])])
    maxs = torch.cat([torch.rand(60, generator=gen) * torch.logspace(3, -6, 60), torch.tensor([0.0, 2.0, 3.0, -1.0])])
    scale, zp = tqx.choose_qparams(mins, maxs, lo, hi, symmetric)
    ts, tz = torch_qparams(mins, maxs, dtype, symmetric)
    assert scale.dtype == F32 and zp.dtype == torch.int64
    assert torch.equal(scale, ts) and torch.equal(zp, tz.long())
    for i in (0, 17, 63):  # 0-d inputs give the same per element
        s0, z0 = tqx.choose_qparams(mins[i], maxs[i], lo, hi, symmetric)
        assert s0.item() == scale[i].item() and z0.item() == zp[i].item()


def test_choose_qparams_custom_range_and_eps(gen):
    mins = -torch.rand(20, generator=gen) * 3
    maxs = torch.rand(20, generator=gen) * 3
    scale, zp = tqx.choose_qparams(mins, maxs, 0, 15)
    ts, tz = torch_qparams(mins, maxs, torch.quint8, False, 0, 15)
    assert torch.equal(scale, ts) and torch.equal(zp, tz.long())
    scale, zp = tqx.choose_qparams(torch.tensor([-1e-9]), torch.tensor([1e-9]), 0, 255, False, 1e-3)
    assert scale.item() == pytest.approx(1e-3, rel=1e-7) and zp.item() == 0
    # nothing observed: scale 1, zero point 0 (torch's default)
    scale, zp = tqx.choose_qparams(torch.tensor([math.inf]), torch.tensor([-math.inf]), 0, 255)
    assert scale.tolist() == [1.0] and zp.tolist() == [0]


# --------------------------------------------------------------------------------------------
# ISA switch

def test_isa_controls():
    names = {"scalar", "avx2", "avx_vnni", "avx512", "avx512_vnni", "amx"}
    try:
        assert tqx.detected_isa() in names
        assert tqx._C.isa_supported("scalar") and tqx._C.isa_supported(tqx.detected_isa())
        tqx.set_max_isa("scalar")
        assert tqx.active_isa() == "scalar"
        tqx.set_max_isa("SCALAR")  # case-insensitive
        assert tqx.active_isa() == "scalar"
        with pytest.raises(ValueError, match="sse9"):
            tqx.set_max_isa("sse9")
        assert tqx.active_isa() == "scalar"  # a failed call leaves the cap alone
    finally:
        tqx.reset_max_isa()
    assert tqx.active_isa() in names


# --------------------------------------------------------------------------------------------
# 8. bad inputs: a RuntimeError naming the op, the argument and the value; never a crash.

Q = torch.ops.quantx
X = torch.randn(4, 3)
ZL = torch.zeros(3, dtype=torch.long)
I32 = torch.ones(3, dtype=torch.int32)
QPT = "quantx::quantize_per_tensor"
QPC = "quantx::quantize_per_channel"

BAD = {
    "int input": (lambda: Q.quantize_per_tensor(I32, 0.1, 0, torch.quint8), QPT + r": input .*float32.*got torch.int32"),
    "float64 input": (lambda: Q.quantize_per_tensor(X.double(), 0.1, 0, torch.quint8),
                      QPT + r": input .*float32.*got torch.float64"),
    "scale 0": (lambda: Q.quantize_per_tensor(X, 0.0, 0, torch.quint8), QPT + r": scale .*> 0, got 0"),
    "scale < 0": (lambda: Q.quantize_per_tensor(X, -2.5, 0, torch.quint8), QPT + r": scale .*got -2.5"),
    "scale nan": (lambda: Q.quantize_per_tensor(X, math.nan, 0, torch.quint8), QPT + r": scale .*got nan"),
    "scale inf": (lambda: Q.quantize_per_tensor(X, math.inf, 0, torch.quint8), QPT + r": scale .*got inf"),
    "scale below float32": (lambda: Q.quantize_per_tensor(X, 1e-300, 0, torch.quint8),
                            QPT + r": scale .*float32.*got 1e-300"),
    "zp above": (lambda: Q.quantize_per_tensor(X, 0.1, 256, torch.quint8), QPT + r": zero_point .*255\], got 256"),
    "zp below": (lambda: Q.quantize_per_tensor(X, 0.1, -129, torch.qint8), QPT + r": zero_point .*got -129"),
    "zp outside custom": (lambda: Q.quantize_per_tensor(X, 0.1, 20, torch.quint8, 0, 15), QPT + r": zero_point .*got 20"),
    "qmin > qmax": (lambda: Q.quantize_per_tensor(X, 0.1, 5, torch.quint8, 10, 3), QPT + r": quant_min should be <= quant_max, got quant_min=10, quant_max=3"),
    "qmin outside dtype": (lambda: Q.quantize_per_tensor(X, 0.1, 0, torch.quint8, -1, 3), QPT + r": quant_min .*got -1"),
    "float dtype": (lambda: Q.quantize_per_tensor(X, 0.1, 0, torch.float32), QPT + r": dtype .*got torch.float32"),
    "axis too big": (lambda: Q.quantize_per_channel(X, torch.ones(3), ZL, 2, torch.qint8), QPC + r": axis .*got 2"),
    "axis too small": (lambda: Q.quantize_per_channel(X, torch.ones(3), ZL, -3, torch.qint8), QPC + r": axis .*got -3"),
    "0-d per channel": (lambda: Q.quantize_per_channel(torch.tensor(1.0), torch.ones(1), ZL[:1], 0, torch.qint8),
                        QPC + r": input .*0-d"),
    "scales length": (lambda: Q.quantize_per_channel(X, torch.ones(4), torch.zeros(4, dtype=torch.long), 1, torch.qint8),
                      QPC + r": scales .*\(3\), got 4"),
    "scales 2-D": (lambda: Q.quantize_per_channel(X, torch.ones(3, 1), ZL, 1, torch.qint8), QPC + r": scales .*1-D.*\[3, 1\]"),
    "scales <= 0": (lambda: Q.quantize_per_channel(X, torch.tensor([1.0, 0.0, 1.0]), ZL, 1, torch.qint8),
                    QPC + r": scales .*scales\[1\] = 0"),
    "scales nan": (lambda: Q.quantize_per_channel(X, torch.tensor([1.0, 1.0, math.nan]), ZL, 1, torch.qint8),
                   QPC + r": scales .*scales\[2\] = nan"),
    "scales int": (lambda: Q.quantize_per_channel(X, I32, ZL, 1, torch.qint8), QPC + r": scales .*floating.*got torch.int32"),
    "zero_points float": (lambda: Q.quantize_per_channel(X, torch.ones(3), torch.zeros(3), 1, torch.qint8),
                          QPC + r": zero_points .*int32 or int64.*got torch.float32"),
    "zero_points range": (lambda: Q.quantize_per_channel(X, torch.ones(3), torch.tensor([0, 200, 0]), 1, torch.qint8),
                          QPC + r": zero_points .*zero_points\[1\] = 200"),
    "zero_points length": (lambda: Q.quantize_per_channel(X, torch.ones(3), ZL[:2], 1, torch.qint8),
                           QPC + r": zero_points .*\(3\), got 2"),
    "requantize float": (lambda: Q.requantize(X, 0.1, 0, torch.quint8), r"quantx::requantize: input .*int32.*got torch.float32"),
    "requantize int64": (lambda: Q.requantize(ZL, 0.1, 0, torch.quint8), r"quantx::requantize: input .*int32.*got torch.int64"),
    "requantize 32-bit out": (lambda: Q.requantize(I32, 0.1, 0, torch.qint32), r"quantx::requantize: dtype .*8-bit.*got torch.qint32"),
    "requantize multiplier": (lambda: Q.requantize(I32, -1.0, 0, torch.quint8), r"quantx::requantize: multiplier .*got -1"),
    "requantize zp": (lambda: Q.requantize(I32, 0.1, 300, torch.quint8), r"quantx::requantize: zero_point .*got 300"),
    "dequantize float": (lambda: Q.dequantize_per_tensor(X, 0.1, 0),
                         r"quantx::dequantize_per_tensor: input .*integer.*got torch.float32"),
    "dequantize int64": (lambda: Q.dequantize_per_tensor(ZL, 0.1, 0),
                         r"quantx::dequantize_per_tensor: input .*integer.*got torch.int64"),
    "dequantize zp": (lambda: Q.dequantize_per_tensor(torch.ones(3, dtype=torch.uint8), 0.1, -1),
                      r"quantx::dequantize_per_tensor: zero_point .*got -1"),
    "dequantize scale": (lambda: Q.dequantize_per_tensor(I32, 0.0, 0), r"quantx::dequantize_per_tensor: scale .*got 0"),
    "dequantize_pc float": (lambda: Q.dequantize_per_channel(X, torch.ones(3), ZL, 1),
                            r"quantx::dequantize_per_channel: input .*integer.*got torch.float32"),
    "dequantize_pc axis": (lambda: Q.dequantize_per_channel(I32, torch.ones(3), ZL, 1),
                           r"quantx::dequantize_per_channel: axis .*got 1"),
    "choose_qparams shapes": (lambda: Q.choose_qparams(torch.zeros(3), torch.zeros(2), 0, 255, False, 1e-7),
                              r"quantx::choose_qparams: min_val and max_val .*\[3\] and \[2\]"),
    "choose_qparams 2-D": (lambda: Q.choose_qparams(torch.zeros(3, 1), torch.zeros(3, 1), 0, 255, False, 1e-7),
                           r"quantx::choose_qparams: min_val .*\[3, 1\]"),
    "choose_qparams float64": (lambda: Q.choose_qparams(torch.zeros(3).double(), torch.zeros(3), 0, 255, False, 1e-7),
                               r"quantx::choose_qparams: min_val .*float32.*got torch.float64"),
    "choose_qparams range": (lambda: Q.choose_qparams(torch.zeros(3), torch.zeros(3), 9, 1, False, 1e-7),
                             r"quantx::choose_qparams: quant_min .*quant_min=9, quant_max=1"),
    "choose_qparams eps": (lambda: Q.choose_qparams(torch.zeros(3), torch.zeros(3), 0, 255, False, 0.0),
                           r"quantx::choose_qparams: eps .*got 0"),
    "quant_range dtype": (lambda: Q.quant_range(torch.float32, False), r"quantx::quant_range: dtype .*got torch.float32"),
}


@pytest.mark.parametrize("case", list(BAD), ids=str)
def test_bad_arguments_raise_named_errors(case):
    fn, pattern = BAD[case]
    with pytest.raises(RuntimeError, match=pattern):
        fn()
