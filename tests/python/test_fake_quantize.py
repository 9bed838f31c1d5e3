"""quantx::fake_quantize_* (straight-through estimator) and the learnable LSQ variants.

Oracles: torch.fake_quantize_per_tensor_affine / fake_quantize_per_channel_affine and
torch._fake_quantize_learnable_per_{tensor,channel}_affine, forward and backward.

Exactness, as found on torch 1.13 (x86):
* STE fake quantize: forward and input gradient bit-exact with torch.
* LSQ: output, dx and dzero_point bit-exact with the torch loaded here (for data away from
  rounding ties). dscale is bit-exact only with torch's portable kernel (ATEN_CPU_CAPABILITY=default):
  torch's AVX2/AVX512 builds of its LSQ gradient kernel let the compiler fuse
  ``zero_point + x * inv_scale`` and ``xfq - x`` into FMAs, which changes the last bits of every
  dscale term and, at exact rounding ties, which bin a value falls into. So: exact checks against
  a ``default``-capability torch in a subprocess (ties included), and a rounding-error bound
  against the in-process torch.
"""
from __future__ import annotations

import io
import math
import os
import subprocess
import sys

import pytest
import torch

import torchquantx as tqx

RANGES = [(0, 255), (-128, 127), (0, 15), (-8, 7), (0, 127)]


def fq_input(gen, n, scale, qmin, qmax, zp):
    span = (qmax - qmin) * scale
    x = torch.cat([
        (torch.rand(n, generator=gen) - 0.5) * 1.6 * span - (zp - (qmin + qmax) / 2) * scale,
        (torch.arange(-30, 30, dtype=torch.float64) + 0.5).mul(scale).float(),
        torch.tensor([1e6, -1e6, 0.0, float("nan"), -float("inf"), scale / 2, -scale / 2]),
    ])
    return x[torch.randperm(x.numel(), generator=gen)]


def grads_of(fn, x, dy):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    y.backward(dy)
    return y.detach(), x.grad


def same(a, b):
    """Bitwise equality that treats NaN == NaN."""
    return a.shape == b.shape and torch.equal(torch.nan_to_num(a, nan=12345.0), torch.nan_to_num(b, nan=12345.0)) \
        and torch.equal(torch.isnan(a), torch.isnan(b))


# --------------------------------------------------------------------------------------------
# 5. STE fake quantize

@pytest.mark.parametrize("qmin,qmax", RANGES)
@pytest.mark.parametrize("scale", [0.1, 1 / 3, 1e-3, 7.5, 0.25])
def test_fake_quantize_per_tensor_matches_torch(isa, gen, qmin, qmax, scale):
    for zp in (qmin, qmax, (qmin + qmax) // 2):
        x = fq_input(gen, 257, scale, qmin, qmax, zp)
        dy = torch.randn(x.shape, generator=gen)
        y, dx = grads_of(lambda t: tqx.fake_quantize_per_tensor(t, scale, zp, qmin, qmax), x, dy)
        ty, tdx = grads_of(lambda t: torch.fake_quantize_per_tensor_affine(t, scale, zp, qmin, qmax), x, dy)
        assert same(y, ty), f"zp={zp}"
        assert same(dx, tdx), f"zp={zp}"


@pytest.mark.parametrize("shape,axis", [((5, 7, 9), 0), ((5, 7, 9), 1), ((5, 7, 9), 2), ((5, 7, 9), -1),
                                        ((3, 40), 1), ((33,), 0), ((2, 16, 3, 3), 0)], ids=str)
@pytest.mark.parametrize("qmin,qmax", [(-128, 127), (0, 255), (0, 15)])
def test_fake_quantize_per_channel_matches_torch(isa, gen, shape, axis, qmin, qmax):
    channels = shape[axis]
    x = torch.randn(shape, generator=gen) * 3
    x.view(-1)[:4] = torch.tensor([float("nan"), 1e6, -1e6, 0.0])
    scales = torch.rand(channels, generator=gen) * 0.2 + 1e-3
    zps = torch.randint(qmin, qmax + 1, (channels,), generator=gen, dtype=torch.int32)
    zps[0] = qmax
    dy = torch.randn(shape, generator=gen)
    ty, tdx = grads_of(lambda t: torch.fake_quantize_per_channel_affine(t, scales, zps, axis % len(shape), qmin, qmax),
                       x, dy)
    for zp_arg in (zps, zps.long()):
        y, dx = grads_of(lambda t: tqx.fake_quantize_per_channel(t, scales, zp_arg, axis, qmin, qmax), x, dy)
        assert same(y, ty) and same(dx, tdx)


def test_fake_quantize_noncontiguous_input_and_grad(isa, gen):
    base = torch.randn(40, 30, generator=gen)
    x = base.t()[::2]
    dy = torch.randn(40, 30, generator=gen).t()[::2]  # a non-contiguous upstream gradient
    assert x.shape == dy.shape and not dy.is_contiguous()
    y, dx = grads_of(lambda t: tqx.fake_quantize_per_tensor(t, 0.02, 3, -128, 127), x, dy)
    ty, tdx = grads_of(lambda t: torch.fake_quantize_per_tensor_affine(t, 0.02, 3, -128, 127), x, dy)
    assert same(y, ty) and same(dx, tdx)
    scales = torch.rand(15, generator=gen) * 0.05 + 0.01
    zps = torch.zeros(15, dtype=torch.int32)
    y, dx = grads_of(lambda t: tqx.fake_quantize_per_channel(t, scales, zps, 0, -128, 127), x, dy)
    ty, tdx = grads_of(lambda t: torch.fake_quantize_per_channel_affine(t, scales, zps, 0, -128, 127), x, dy)
    assert same(y, ty) and same(dx, tdx)


def test_fake_quantize_values_by_hand(isa):
    # scale 0.5, zp 1, range [0, 7]: representable values (q - 1) * 0.5 = -0.5 .. 3.0
    x = torch.tensor([0.0, 0.2, 0.25, 0.75, 1.26, -0.5, -0.76, 2.9, 3.3, 100.0] * 3)
    y = tqx.fake_quantize_per_tensor(x, 0.5, 1, 0, 7)
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 1.5, -0.5, -0.5, 3.0, 3.0, 3.0] * 3


@pytest.mark.parametrize("per_channel", [False, True])
def test_straight_through_estimator(isa, gen, per_channel):
    # Values well inside the range get the upstream gradient unchanged; values far outside get 0.
    scale, zp, qmin, qmax = 0.1, 10, 0, 255  # representable: [-1.0, 24.5]
    inside = torch.rand(100, generator=gen) * 24.0 - 0.8
    outside = torch.cat([torch.rand(50, generator=gen) * 10 + 25.0, -torch.rand(50, generator=gen) * 10 - 1.5])
    x = torch.stack([torch.cat([inside, outside]), torch.cat([outside, inside])])  # 2 x 200
    dy = torch.randn(x.shape, generator=gen)
    if per_channel:
        fn = lambda t: tqx.fake_quantize_per_channel(t, torch.full((2,), scale), torch.full((2,), zp), 0, qmin, qmax)  # noqa: E731
    else:
        fn = lambda t: tqx.fake_quantize_per_tensor(t, scale, zp, qmin, qmax)  # noqa: E731
    _, dx = grads_of(fn, x, dy)
    assert torch.equal(dx[0, :100], dy[0, :100]) and torch.equal(dx[1, 100:], dy[1, 100:])
    assert torch.all(dx[0, 100:] == 0) and torch.all(dx[1, :100] == 0)


def test_no_grad_and_inference_paths(gen):
    x = torch.randn(50, generator=gen, requires_grad=True)
    with torch.no_grad():
        y = tqx.fake_quantize_per_tensor(x, 0.1, 0, -128, 127)
    assert not y.requires_grad
    with torch.inference_mode():
        y2 = tqx.fake_quantize_per_channel(x.detach(), torch.tensor([0.1]).expand(50).contiguous(),
                                          torch.zeros(50, dtype=torch.int32), 0, -128, 127)
    assert torch.equal(y, y2)
    y3 = tqx.fake_quantize_per_tensor(x, 0.1, 0, -128, 127)
    assert y3.requires_grad and y3.grad_fn is not None


# --------------------------------------------------------------------------------------------
# 6. learnable (LSQ)

def lsq(fn, x, scale, zp, *args, dy, wrt=("x", "scale", "zp")):
    x = x.detach().clone().requires_grad_("x" in wrt)
    s = scale.detach().clone().requires_grad_("scale" in wrt)
    z = zp.detach().clone().requires_grad_("zp" in wrt)
    y = fn(x, s, z, *args)
    y.backward(dy)
    return y.detach(), x.grad, s.grad, z.grad


def ours_lsq(x, s, z, axis, qmin, qmax, gf, dy, wrt=("x", "scale", "zp")):
    if axis is None:
        return lsq(tqx.fake_quantize_learnable_per_tensor, x, s, z, qmin, qmax, gf, dy=dy, wrt=wrt)
    return lsq(tqx.fake_quantize_learnable_per_channel, x, s, z, axis, qmin, qmax, gf, dy=dy, wrt=wrt)


def torch_lsq(x, s, z, axis, qmin, qmax, gf, dy, wrt=("x", "scale", "zp")):
    if axis is None:
        return lsq(torch._fake_quantize_learnable_per_tensor_affine, x, s, z, qmin, qmax, gf, dy=dy, wrt=wrt)
    if x.dim() == 1:
        # torch's backward returns a 0-d dscale for 1-D inputs (a torch bug); a trailing
        # singleton dimension gives torch the same per-channel problem in a shape it handles.
        y, dx, ds, dz = torch_lsq(x.unsqueeze(1), s, z, 0, qmin, qmax, gf, dy.unsqueeze(1), wrt)
        return y.squeeze(1), None if dx is None else dx.squeeze(1), ds, dz
    return lsq(torch._fake_quantize_learnable_per_channel_affine, x, s, z, axis % x.dim(), qmin, qmax, gf, dy=dy,
               wrt=wrt)


def lsq_cases():
    """(x, scale, zero_point, axis, qmin, qmax, grad_factor, dy, has_ties)"""
    gen = torch.Generator().manual_seed(7)
    cases = []
    for qmin, qmax in [(0, 255), (-128, 127), (0, 15), (-8, 7)]:
        for sv in (0.1, 1 / 3, 0.05, 0.0123):
            for zv in sorted({float(qmin), float(qmax), 3.0, 3.4, 3.6, 2.5, 1.0, -0.5, qmin - 3.0}):
                n = 300
                for gf in (1.0, 1.0 / math.sqrt(n * qmax)):
                    x = (torch.rand(n, generator=gen) - 0.5) * 1.4 * (qmax - qmin) * sv \
                        - (zv - (qmin + qmax) / 2) * sv
                    dy = torch.randn(n, generator=gen)
                    s, z = torch.tensor([sv]), torch.tensor([zv])
                    cases.append((x, s, z, None, qmin, qmax, gf, dy, False))
                    ties = (torch.arange(-20, 20, dtype=torch.float64) + 0.5).mul(sv).float()
                    cases.append((ties, s, z, None, qmin, qmax, gf, torch.randn(40, generator=gen), True))
    for shape, axis in [((5, 7, 9), 0), ((5, 7, 9), 1), ((5, 7, 9), 2), ((5, 7, 9), -1), ((3, 40), 1), ((33,), 0)]:
        channels = shape[axis]
        for qmin, qmax in [(-8, 7), (0, 255)]:
            for gf in (1.0, 0.01):
                s = torch.rand(channels, generator=gen) * 0.05 + 0.01
                z = torch.rand(channels, generator=gen) * (qmax - qmin + 6) + qmin - 3
                z[0] = 2.5
                x = torch.randn(shape, generator=gen) * 2
                dy = torch.randn(shape, generator=gen)
                cases.append((x, s, z, axis, qmin, qmax, gf, dy, False))
                bshape = [-1 if d == axis % len(shape) else 1 for d in range(len(shape))]
                ties = (torch.randint(-10, 10, shape, generator=gen) + 0.5) * s.reshape(bshape)
                cases.append((ties, s, z, axis, qmin, qmax, gf, dy, True))
    return cases


LSQ_CASES = lsq_cases()


def _describe(c):
    x, s, z, axis, qmin, qmax, gf, _, ties = c
    return (f"{'per_tensor' if axis is None else f'per_channel axis={axis} shape={tuple(x.shape)}'} "
            f"range=[{qmin},{qmax}] scale={s.tolist()[:2]} zp={z.tolist()[:2]} grad_factor={gf:.4g} ties={ties}")


# Cases grouped per (kind, range, ties) so that a test reports a handful of ids, not hundreds.
LSQ_GROUPS: dict = {}
for _i, _c in enumerate(LSQ_CASES):
    LSQ_GROUPS.setdefault(f"{'pt' if _c[3] is None else 'pc'}[{_c[4]},{_c[5]}]{'-ties' if _c[8] else ''}", []).append(_i)

_REFERENCE_SCRIPT = r"""
import sys, torch
out = []
for x, s, z, axis, qmin, qmax, gf, dy, _ in torch.load(sys.argv[1]):
    if axis is not None and x.dim() == 1:  # see torch_lsq in the test file
        x, dy, axis = x.unsqueeze(1), dy.unsqueeze(1), 0
    x = x.clone().requires_grad_(True); s = s.clone().requires_grad_(True); z = z.clone().requires_grad_(True)
    if axis is None:
        y = torch._fake_quantize_learnable_per_tensor_affine(x, s, z, qmin, qmax, gf)
    else:
        y = torch._fake_quantize_learnable_per_channel_affine(x, s, z, axis % x.dim(), qmin, qmax, gf)
    y.backward(dy)
    out.append((y.detach(), x.grad, s.grad, z.grad))
torch.save(out, sys.argv[2])
"""


@pytest.fixture(scope="module")
def portable_torch_results(tmp_path_factory):
    """torch's LSQ results computed by its portable (non-FMA) kernels, in a subprocess."""
    d = tmp_path_factory.mktemp("lsq")
    torch.save(LSQ_CASES, d / "cases.pt")
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    subprocess.run([sys.executable, "-c", _REFERENCE_SCRIPT, str(d / "cases.pt"), str(d / "out.pt")],
                   env=env, check=True, timeout=120)
    return torch.load(d / "out.pt")


@pytest.mark.parametrize("group", list(LSQ_GROUPS))
def test_learnable_bit_exact_with_portable_torch(portable_torch_results, group):
    for idx in LSQ_GROUPS[group]:
        x, s, z, axis, qmin, qmax, gf, dy, _ = LSQ_CASES[idx]
        ours = ours_lsq(x, s, z, axis, qmin, qmax, gf, dy)
        ref = list(portable_torch_results[idx])
        if axis is not None and x.dim() == 1:
            ref[0], ref[1] = ref[0].squeeze(1), ref[1].squeeze(1)
        for name, a, b in zip(("y", "dx", "dscale", "dzero_point"), ours, ref):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert torch.equal(a, b), \
                f"{_describe(LSQ_CASES[idx])}: {name}: ours {a.flatten()[:4].tolist()} torch {b.flatten()[:4].tolist()}"


def dscale_error_bound(x, s, axis, gf, dy):
    """Bound on |ours - FMA torch| for dscale: a few float32 roundings of each |dy| * (|x| + s) / s term."""
    if axis is None:
        terms = dy.abs() * (x.abs() + s) / s
        return 2.0 ** -21 * gf * terms.sum().reshape(1)
    axis = axis % x.dim()
    bshape = [-1 if d == axis else 1 for d in range(x.dim())]
    terms = dy.abs() * (x.abs() + s.reshape(bshape)) / s.reshape(bshape)
    dims = [d for d in range(x.dim()) if d != axis]
    return 2.0 ** -21 * gf * (terms.sum(dims) if dims else terms)


@pytest.mark.parametrize("group", [g for g in LSQ_GROUPS if not g.endswith("ties")])
def test_learnable_matches_inprocess_torch(isa, group):
    for idx in LSQ_GROUPS[group]:
        x, s, z, axis, qmin, qmax, gf, dy, _ = LSQ_CASES[idx]
        what = _describe(LSQ_CASES[idx])
        y, dx, ds, dz = ours_lsq(x, s, z, axis, qmin, qmax, gf, dy)
        ty, tdx, tds, tdz = torch_lsq(x, s, z, axis, qmin, qmax, gf, dy)
        # exact: output, input gradient, zero-point gradient
        assert torch.equal(y, ty) and torch.equal(dx, tdx) and torch.equal(dz, tdz), what
        # dscale: within the FMA rounding bound (see the module docstring), not bit-exact
        assert ds.shape == tds.shape and ds.dtype == tds.dtype, what
        bound = dscale_error_bound(x, s, axis, gf, dy) + 1e-6 * tds.abs()
        assert torch.all((ds - tds).abs() <= bound), f"{what}: max err {(ds - tds).abs().max()} bound {bound.min()}"


def test_learnable_grad_factor_scales_qparam_grads_only(gen):
    x = torch.randn(200, generator=gen)
    dy = torch.randn(200, generator=gen)
    s, z = torch.tensor([0.01]), torch.tensor([100.0])  # many values clamped -> non-zero dz
    a = ours_lsq(x, s, z, None, 0, 255, 1.0, dy)
    b = ours_lsq(x, s, z, None, 0, 255, 0.25, dy)  # a power of two: exact scaling
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[2] * 0.25, b[2]) and torch.equal(a[3] * 0.25, b[3])
    assert a[3].item() != 0.0 and a[2].item() != 0.0


@pytest.mark.parametrize("wrt", [("scale",), ("zp",), ("scale", "zp"), ("x",)], ids=str)
def test_learnable_partial_requires_grad(gen, wrt):
    x = torch.randn(6, 10, generator=gen) * 2
    dy = torch.randn(6, 10, generator=gen)
    s, z = torch.tensor([0.03]), torch.tensor([2.0])
    ours = ours_lsq(x, s, z, None, -8, 7, 1.0, dy, wrt=wrt)
    ref = torch_lsq(x, s, z, None, -8, 7, 1.0, dy, wrt=wrt)
    assert torch.equal(ours[0], ref[0])
    for name, a, b in zip(("x", "scale", "zp"), ours[1:], ref[1:]):
        assert (a is None) == (name not in wrt) == (b is None)
        if a is not None and name != "scale":
            assert torch.equal(a, b)
        elif a is not None:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    sc, zc = torch.rand(10, generator=gen) * 0.1 + 0.01, torch.zeros(10)
    ours = ours_lsq(x, sc, zc, 1, -8, 7, 1.0, dy, wrt=wrt)
    ref = torch_lsq(x, sc, zc, 1, -8, 7, 1.0, dy, wrt=wrt)
    assert torch.equal(ours[0], ref[0])
    for name, a, b in zip(("x", "scale", "zp"), ours[1:], ref[1:]):
        assert (a is None) == (name not in wrt) == (b is None)


def test_learnable_zero_dim_qparams(gen):
    x = torch.randn(20, generator=gen)
    y, dx, ds, dz = ours_lsq(x, torch.tensor(0.1), torch.tensor(3.0), None, 0, 255, 1.0, torch.ones(20))
    assert ds.shape == () and dz.shape == ()
    ref = ours_lsq(x, torch.tensor([0.1]), torch.tensor([3.0]), None, 0, 255, 1.0, torch.ones(20))
    assert torch.equal(y, ref[0]) and ds.item() == ref[2].item() and dz.item() == ref[3].item()


# --------------------------------------------------------------------------------------------
# 7. TorchScript and training

def test_ops_in_scripted_function(gen):
    @torch.jit.script
    def f(x: torch.Tensor, s: torch.Tensor, z: torch.Tensor, sc: torch.Tensor, zc: torch.Tensor):
        a = tqx.fake_quantize_per_tensor(x, 0.05, 3, -128, 127)
        b = torch.ops.quantx.fake_quantize_per_channel(x, sc, zc, 1, -128, 127)
        c = tqx.fake_quantize_learnable_per_tensor(x, s, z, 0, 255, 0.5)
        d = tqx.fake_quantize_learnable_per_channel(x, sc, zc.float(), 1, -8, 7)
        return a + b + c + d

    x = torch.randn(4, 6, generator=gen)
    s, z = torch.tensor([0.02]), torch.tensor([10.0])
    sc, zc = torch.rand(6, generator=gen) * 0.1 + 0.01, torch.zeros(6, dtype=torch.int32)
    expected = (torch.fake_quantize_per_tensor_affine(x, 0.05, 3, -128, 127)
                + torch.fake_quantize_per_channel_affine(x, sc, zc, 1, -128, 127)
                + torch._fake_quantize_learnable_per_tensor_affine(x, s, z, 0, 255, 0.5)
                + torch._fake_quantize_learnable_per_channel_affine(x, sc, zc.float(), 1, -8, 7, 1.0))
    xs = x.clone().requires_grad_(True)
    ss = s.clone().requires_grad_(True)
    got = f(xs, ss, z, sc, zc)
    assert torch.equal(got, expected)
    got.sum().backward()
    assert xs.grad is not None and ss.grad is not None and torch.isfinite(ss.grad).all()


class QuantLinear(torch.nn.Module):
    """Linear layer with LSQ fake quantization on the input and per-channel STE on the weight."""

    def __init__(self, fin: int, fout: int):
        super().__init__()
        self.lin = torch.nn.Linear(fin, fout)
        self.act_scale = torch.nn.Parameter(torch.tensor([0.05]))
        self.act_zp = torch.nn.Parameter(torch.tensor([0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = tqx.fake_quantize_learnable_per_tensor(x, self.act_scale, self.act_zp, -128, 127, 0.1)
        w = self.lin.weight
        wscale = (w.detach().abs().amax(1) / 127.0).clamp_min(1e-8)
        wq = tqx.fake_quantize_per_channel(w, wscale, torch.zeros(w.shape[0], dtype=torch.int32), 0, -127, 127)
        return torch.nn.functional.linear(xq, wq, self.lin.bias)


@pytest.mark.parametrize("scripted", [False, True])
def test_training_loop_reduces_loss(gen, scripted):
    torch.manual_seed(3)
    model = torch.nn.Sequential(QuantLinear(8, 16), torch.nn.ReLU(), QuantLinear(16, 1))
    if scripted:
        model = torch.jit.script(model)
    x = torch.randn(128, 8, generator=gen)
    target = x @ torch.randn(8, 1, generator=gen) * 0.5
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model[0].act_scale.item() > 0 and model[0].act_scale.item() != 0.05  # the scale learned


def test_scripted_module_save_load_round_trip(gen):
    m = torch.jit.script(QuantLinear(5, 3))
    buf = io.BytesIO()
    torch.jit.save(m, buf)
    buf.seek(0)
    m2 = torch.jit.load(buf)
    x = torch.randn(7, 5, generator=gen)
    assert torch.equal(m(x), m2(x))
    assert "quantx::fake_quantize_learnable_per_tensor" in str(m2.graph) or \
        "fake_quantize_learnable_per_tensor" in m2.code


# --------------------------------------------------------------------------------------------
# 8. bad inputs

X = torch.randn(4, 3)
FQ = "quantx::fake_quantize_per_tensor"
FQC = "quantx::fake_quantize_per_channel"
LPT = "quantx::fake_quantize_learnable_per_tensor"
LPC = "quantx::fake_quantize_learnable_per_channel"
ONE, ZERO = torch.tensor([0.1]), torch.tensor([0.0])
Z3 = torch.zeros(3, dtype=torch.int32)

BAD = {
    "fq int input": (lambda: tqx.fake_quantize_per_tensor(Z3, 0.1, 0, 0, 255), FQ + r": input .*float32.*got torch.int32"),
    "fq float64": (lambda: tqx.fake_quantize_per_tensor(X.double(), 0.1, 0, 0, 255), FQ + r": input .*float32.*got torch.float64"),
    "fq scale 0": (lambda: tqx.fake_quantize_per_tensor(X, 0.0, 0, 0, 255), FQ + r": scale .*got 0"),
    "fq scale nan": (lambda: tqx.fake_quantize_per_tensor(X, math.nan, 0, 0, 255), FQ + r": scale .*got nan"),
    "fq scale inf": (lambda: tqx.fake_quantize_per_tensor(X, math.inf, 0, 0, 255), FQ + r": scale .*got inf"),
    "fq zp": (lambda: tqx.fake_quantize_per_tensor(X, 0.1, 300, 0, 255), FQ + r": zero_point .*got 300"),
    "fq range": (lambda: tqx.fake_quantize_per_tensor(X, 0.1, 0, 10, 5), FQ + r": quant_min .*quant_min=10, quant_max=5"),
    "fqc axis": (lambda: tqx.fake_quantize_per_channel(X, torch.ones(3), Z3, 2, 0, 255), FQC + r": axis .*got 2"),
    "fqc scales len": (lambda: tqx.fake_quantize_per_channel(X, torch.ones(2), Z3, 1, 0, 255), FQC + r": scales .*\(3\), got 2"),
    "fqc scale <= 0": (lambda: tqx.fake_quantize_per_channel(X, -torch.ones(3), Z3, 1, 0, 255), FQC + r": scales .*scales\[0\] = -1"),
    "fqc zp float": (lambda: tqx.fake_quantize_per_channel(X, torch.ones(3), torch.zeros(3), 1, 0, 255),
                     FQC + r": zero_points .*got torch.float32"),
    "fqc zp range": (lambda: tqx.fake_quantize_per_channel(X, torch.ones(3), Z3 - 1, 1, 0, 255),
                     FQC + r": zero_points .*zero_points\[0\] = -1"),
    "lsq negative scale": (lambda: tqx.fake_quantize_learnable_per_tensor(X, -ONE, ZERO, 0, 255), LPT + r": scale .*got -0.1"),
    "lsq zero scale": (lambda: tqx.fake_quantize_learnable_per_tensor(X, ONE * 0, ZERO, 0, 255), LPT + r": scale .*got 0"),
    "lsq 2-element scale": (lambda: tqx.fake_quantize_learnable_per_tensor(X, torch.ones(2), ZERO, 0, 255),
                            LPT + r": scale .*one-element.*\[2\]"),
    "lsq int scale": (lambda: tqx.fake_quantize_learnable_per_tensor(X, torch.ones(1, dtype=torch.int32), ZERO, 0, 255),
                      LPT + r": scale .*floating.*got torch.int32"),
    "lsq nan zp": (lambda: tqx.fake_quantize_learnable_per_tensor(X, ONE, ZERO + math.nan, 0, 255),
                   LPT + r": zero_point .*got nan"),
    "lsq range": (lambda: tqx.fake_quantize_learnable_per_tensor(X, ONE, ZERO, 5, 1), LPT + r": quant_min .*quant_min=5"),
    "lsq float64 input": (lambda: tqx.fake_quantize_learnable_per_tensor(X.double(), ONE, ZERO, 0, 255),
                          LPT + r": input .*got torch.float64"),
    "lsqc negative scale": (lambda: tqx.fake_quantize_learnable_per_channel(X, torch.tensor([0.1, -1.0, 1.0]),
                                                                           torch.zeros(3), 1, 0, 255),
                            LPC + r": scale .*scale\[1\] = -1"),
    "lsqc int zp": (lambda: tqx.fake_quantize_learnable_per_channel(X, torch.ones(3), Z3, 1, 0, 255),
                    LPC + r": zero_point .*floating.*got torch.int32"),
    "lsqc axis": (lambda: tqx.fake_quantize_learnable_per_channel(X, torch.ones(3), torch.zeros(3), -3, 0, 255),
                  LPC + r": axis .*got -3"),
    "lsqc scale len": (lambda: tqx.fake_quantize_learnable_per_channel(X, torch.ones(4), torch.zeros(3), 1, 0, 255),
                       LPC + r": scale .*\(3\), got 4"),
}


@pytest.mark.parametrize("case", list(BAD), ids=str)
def test_bad_arguments_raise_named_errors(case):
    fn, pattern = BAD[case]
    with pytest.raises(RuntimeError, match=pattern):
        fn()


def test_learnable_backward_ops_check_their_arguments():
    q = torch.ops.quantx
    x, g = torch.randn(10), torch.ones(10)
    with pytest.raises(RuntimeError, match=r"quantx::fake_quantize_learnable_per_tensor \(backward\): scale .*got -1"):
        q._fake_quantize_learnable_per_tensor_backward(g, x, torch.tensor([-1.0]), torch.tensor([0.0]), 0, 255, 1.0)
    with pytest.raises(RuntimeError, match=r"\(backward\): grad should have the input's shape \[10\], got \[9\]"):
        q._fake_quantize_learnable_per_tensor_backward(g[:9], x, torch.tensor([0.1]), torch.tensor([0.0]), 0, 255, 1.0)
    with pytest.raises(RuntimeError, match=r"quantx::fake_quantize_learnable_per_channel \(backward\): scale .*scale\[0\] = 0"):
        q._fake_quantize_learnable_per_channel_backward(g, x, torch.zeros(10), torch.zeros(10), 0, 0, 255, 1.0)
