"""torchquantx observers (nn.Modules over torch.classes.quantx.*) against torch.ao.quantization.

Documented differences that are not compared: quint8 symmetric with reduce_range or a custom
range (ours: zero point (qmin + qmax + 1) // 2; torch: 128 or (qmin + qmax) // 2), and the zero
point dtype (ours int64; values are compared).
"""
from __future__ import annotations

import io
import math

import pytest
import torch
from torch.ao.quantization import observer as tao

import torchquantx as tqx

INF, NAN = math.inf, math.nan

pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning")


def batches(gen, shape, n=5):
    """Batches of very different scale and offset, so min/max and moving averages all move."""
    spec = [(0.5, 0.0), (3.0, 1.0), (0.01, -2.0), (10.0, 5.0), (1.0, 0.3), (0.2, -0.7)][:n]
    return [torch.randn(shape, generator=gen) * s + m for s, m in spec]


# (ours, torch, input shape) factories keyed by a readable id; torch's is None where torch refuses
def _pair(kind, dtype, symmetric, reduce_range, qrange=(None, None)):
    try:
        return _make_pair(kind, dtype, symmetric, reduce_range, qrange)
    except NotImplementedError:  # torch: "Cannot reduce range for symmetric quantization for quint8"
        if not (symmetric and reduce_range and dtype == torch.quint8):
            raise
        ours = _make_pair(kind, dtype, symmetric, reduce_range, qrange, with_torch=False)
        return ours[0], None, ours[2]


def _make_pair(kind, dtype, symmetric, reduce_range, qrange, with_torch=True):
    tao_ = tao if with_torch else _NO_TORCH
    pt = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    pc = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    kw = dict(dtype=dtype, reduce_range=reduce_range, quant_min=qrange[0], quant_max=qrange[1])
    if kind == "minmax":
        return tqx.MinMaxObserver(qscheme=pt, **kw), tao_.MinMaxObserver(qscheme=pt, **kw), (4, 33)
    if kind.startswith("ma") and not kind.startswith("mapc"):
        c = float(kind[2:])
        return (tqx.MovingAverageMinMaxObserver(c, qscheme=pt, **kw),
                tao_.MovingAverageMinMaxObserver(c, qscheme=pt, **kw), (4, 33))
    if kind.startswith("pc"):
        axis = int(kind[2:])
        return (tqx.PerChannelMinMaxObserver(axis, qscheme=pc, **kw),
                tao_.PerChannelMinMaxObserver(axis, qscheme=pc, **kw), (6, 5, 7))
    if kind.startswith("mapc"):
        c, axis = kind[4:].split("_")
        return (tqx.MovingAveragePerChannelMinMaxObserver(float(c), int(axis), qscheme=pc, **kw),
                tao_.MovingAveragePerChannelMinMaxObserver(float(c), int(axis), qscheme=pc, **kw), (6, 5, 7))
    if kind == "histogram":  # qparams from the exact min/max, i.e. torch's MinMaxObserver
        return tqx.HistogramObserver(qscheme=pt, **kw), tao_.MinMaxObserver(qscheme=pt, **kw), (4, 33)
    raise AssertionError(kind)


class _TorchRefuses:
    """Stands in for torch.ao.quantization.observer where torch refuses the settings: builds None."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


_NO_TORCH = _TorchRefuses()

KINDS = ["minmax", "ma0.01", "ma0.5", "pc0", "pc1", "mapc0.01_0", "mapc0.5_1", "histogram"]


def check_against_torch(ours, theirs, xs, documented_zero_point=None):
    for x in xs:
        out = ours(x)
        assert out is x  # forward returns its input object
        theirs(x)
    scale, zp = ours.calculate_qparams()
    tscale, tzp = theirs.calculate_qparams()
    assert scale.dtype == torch.float32 and zp.dtype == torch.int64
    assert torch.equal(scale, tscale.reshape(-1)), (scale, tscale)
    if documented_zero_point is None:
        assert torch.equal(zp, tzp.reshape(-1).long()), (zp, tzp)
    else:
        assert torch.all(zp == documented_zero_point), zp
    if not isinstance(ours, tqx.HistogramObserver):
        assert torch.equal(ours.observed_min(), theirs.min_val.reshape(-1))
        assert torch.equal(ours.observed_max(), theirs.max_val.reshape(-1))


@pytest.mark.parametrize("reduce_range", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("dtype", [torch.quint8, torch.qint8], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_qparams_match_torch(isa, gen, kind, dtype, symmetric, reduce_range):
    ours, theirs, shape = _pair(kind, dtype, symmetric, reduce_range)
    documented = None
    if theirs is None:
        # Documented difference: torch refuses this combination (NotImplementedError); ours uses the
        # range [0, 127] with zero point (0 + 127 + 1) // 2 = 64. Its scale is torch's for [0, 127].
        theirs = _pair(kind, dtype, symmetric, False, (0, 127))[1]
        documented = 64
    check_against_torch(ours, theirs, batches(gen, shape), documented)


@pytest.mark.parametrize("dtype,qrange,symmetric", [
    (torch.quint8, (0, 15), False), (torch.quint8, (0, 127), False), (torch.qint8, (-8, 7), False),
    (torch.qint8, (-8, 7), True), (torch.qint8, (-100, 27), False),
])
@pytest.mark.parametrize("kind", ["minmax", "ma0.3", "pc1", "mapc0.3_0"])
def test_qparams_custom_range_match_torch(gen, kind, dtype, qrange, symmetric):
    ours, theirs, shape = _pair(kind, dtype, symmetric, False, qrange)
    check_against_torch(ours, theirs, batches(gen, shape))


def test_qparams_before_any_data_are_torch_defaults():
    for obs in (tqx.MinMaxObserver(), tqx.MovingAverageMinMaxObserver(), tqx.HistogramObserver(bins=8)):
        scale, zp = obs.calculate_qparams()
        assert scale.tolist() == [1.0] and zp.tolist() == [0]
        assert obs.observed_min().tolist() == [INF] and obs.observed_max().tolist() == [-INF]


@pytest.mark.parametrize("cls", [tqx.MinMaxObserver, tqx.MovingAverageMinMaxObserver, tqx.HistogramObserver,
                                 tqx.PerChannelMinMaxObserver, tqx.MovingAveragePerChannelMinMaxObserver])
def test_nonfinite_values_are_counted_and_skipped(isa, gen, cls):
    # Sizes around every SIMD width; NaN / +-Inf at random positions (body and tail). Each row of
    # the 2 x n batch keeps at least one finite value.
    accumulating = cls(ch_axis=0) if "PerChannel" in cls.__name__ else cls()
    finite_seen, bad_seen = [], 0
    for n in (1, 7, 8, 9, 15, 16, 17, 31, 33, 40, 64, 100):
        x = torch.randn(2, n, generator=gen) * n
        for row in range(2):
            k = int(torch.randint(0, n, (1,), generator=gen))
            idx = torch.randperm(n, generator=gen)[:k]
            x[row, idx] = torch.tensor([NAN, INF, -INF])[torch.arange(k) % 3]
        ok = torch.isfinite(x)
        bad_seen += int((~ok).sum())
        # a fresh observer: its bounds are this batch's finite extremes, per row or overall
        fresh = cls(ch_axis=0) if "PerChannel" in cls.__name__ else cls()
        fresh(x)
        assert fresh.nonfinite_count() == int((~ok).sum())
        if "PerChannel" in cls.__name__:
            exp_min = torch.stack([x[r][ok[r]].min() for r in range(2)])
            exp_max = torch.stack([x[r][ok[r]].max() for r in range(2)])
        else:
            exp_min, exp_max = x[ok].min().reshape(1), x[ok].max().reshape(1)
        assert torch.equal(fresh.observed_min(), exp_min) and torch.equal(fresh.observed_max(), exp_max)
        accumulating(x)
        assert accumulating.nonfinite_count() == bad_seen
        finite_seen.append(x[ok])
    if cls in (tqx.MinMaxObserver, tqx.HistogramObserver):
        ref = tao.MinMaxObserver()
        ref(torch.cat(finite_seen))
        assert torch.equal(accumulating.observed_min(), ref.min_val.reshape(1))
        assert torch.equal(accumulating.observed_max(), ref.max_val.reshape(1))
        scale, zp = accumulating.calculate_qparams()
        tscale, tzp = ref.calculate_qparams()
        assert torch.equal(scale, tscale) and torch.equal(zp, tzp.long())


@pytest.mark.parametrize("where", ["first", "later"])
@pytest.mark.parametrize("cls", [tqx.MovingAverageMinMaxObserver, tqx.MovingAveragePerChannelMinMaxObserver])
def test_moving_average_skips_all_nonfinite_batch(cls, where):
    bad = torch.tensor([[NAN, INF, -INF], [NAN, NAN, INF]])
    good = torch.tensor([[-1.0, 2.0, 0.5], [-1.0, 2.0, 0.5]])
    obs = cls(averaging_constant=0.5)
    for x in ([bad, good] if where == "first" else [good, bad]):
        obs(x)
    assert obs.nonfinite_count() == 6
    n = obs.observed_min().numel()
    assert obs.observed_min().tolist() == [-1.0] * n and obs.observed_max().tolist() == [2.0] * n
    scale, zp = obs.calculate_qparams()
    assert torch.equal(scale, torch.full((n,), 3.0 / 255)) and zp.tolist() == [85] * n


@pytest.mark.parametrize("cls", [tqx.MinMaxObserver, tqx.MovingAverageMinMaxObserver, tqx.HistogramObserver,
                                 tqx.PerChannelMinMaxObserver, tqx.MovingAveragePerChannelMinMaxObserver])
def test_empty_input_is_a_noop(gen, cls):
    obs = cls()
    empty = torch.empty(0, 4)
    assert obs(empty) is empty
    assert obs.calculate_qparams()[0].tolist() == [1.0] and obs.nonfinite_count() == 0
    x = torch.randn(4, 4, generator=gen)
    obs(x)
    before = (obs.calculate_qparams(), obs.observed_min(), obs.observed_max())
    obs(torch.empty(4, 0))
    after = (obs.calculate_qparams(), obs.observed_min(), obs.observed_max())
    assert all(torch.equal(a, b) for a, b in zip(before[0] + before[1:], after[0] + after[1:]))
    assert obs.impl.batches() == 1


@pytest.mark.parametrize("cls", [tqx.MinMaxObserver, tqx.MovingAverageMinMaxObserver, tqx.HistogramObserver,
                                 tqx.PerChannelMinMaxObserver, tqx.MovingAveragePerChannelMinMaxObserver])
@pytest.mark.parametrize("bad,got", [(torch.ones(3, dtype=torch.float64), "Double"), (torch.ones(3, dtype=torch.int32), "Int"),
                                     (torch.ones(3, dtype=torch.float16), "Half"), (torch.ones(3, dtype=torch.uint8), "Byte")],
                         ids=["float64", "int32", "float16", "uint8"])
def test_wrong_input_dtype_names_the_observer(cls, bad, got):
    with pytest.raises(RuntimeError, match=rf"{cls.__name__}: input should be a float32 tensor, got {got}"):
        cls()(bad)


def test_sparse_input_is_rejected():
    with pytest.raises(RuntimeError, match=r"MinMaxObserver: input should be a dense CPU tensor"):
        tqx.MinMaxObserver()(torch.ones(3).to_sparse())


@pytest.mark.parametrize("cls", [tqx.PerChannelMinMaxObserver, tqx.MovingAveragePerChannelMinMaxObserver])
def test_per_channel_shape_errors(cls):
    obs = cls(ch_axis=1)
    obs(torch.randn(2, 3, 4))
    obs(torch.randn(5, 3))  # other dims may change
    with pytest.raises(RuntimeError, match=rf"{cls.__name__}: input should have 3 channels along axis 1 .*\[2, 4\]"):
        obs(torch.randn(2, 4))
    with pytest.raises(RuntimeError, match=rf"{cls.__name__}: axis 1 is out of range .*\[7\]"):
        obs(torch.randn(7))
    with pytest.raises(RuntimeError, match=rf"{cls.__name__}: input should have at least one dimension"):
        obs(torch.tensor(1.0))
    assert obs.observed_min().numel() == 3  # failed calls changed nothing
    neg = cls(ch_axis=-1)
    x = torch.randn(4, 6)
    neg(x)
    assert torch.equal(neg.observed_max(), x.amax(0))


def test_reset_min_max_vals(gen):
    for obs in (tqx.MinMaxObserver(), tqx.PerChannelMinMaxObserver(), tqx.HistogramObserver(bins=16)):
        obs(torch.tensor([[NAN, 1.0], [2.0, 3.0]]))
        obs.reset_min_max_vals()
        assert obs.nonfinite_count() == 0 and obs.observed_min().tolist() == [INF]
        assert obs.calculate_qparams()[0].tolist() == [1.0]
        x = torch.randn(3, 5, generator=gen)
        obs(x)
        fresh = type(obs)()
        fresh(x)
        assert torch.equal(obs.calculate_qparams()[0], fresh.calculate_qparams()[0])


@pytest.mark.parametrize("ctor,pattern", [
    (lambda: tqx.MinMaxObserver(dtype=torch.float32), r"MinMaxObserver: dtype .*got torch.float32"),
    (lambda: tqx.MinMaxObserver(qscheme=torch.per_channel_affine), r"MinMaxObserver: qscheme .*per_channel_affine"),
    (lambda: tqx.PerChannelMinMaxObserver(qscheme=torch.per_tensor_affine),
     r"PerChannelMinMaxObserver: qscheme .*per_tensor_affine"),
    (lambda: tqx.MovingAverageMinMaxObserver(averaging_constant=0.0), r"MovingAverageMinMaxObserver: averaging_constant .*got 0"),
    (lambda: tqx.MovingAveragePerChannelMinMaxObserver(averaging_constant=1.5),
     r"MovingAveragePerChannelMinMaxObserver: averaging_constant .*got 1.5"),
    (lambda: tqx.HistogramObserver(bins=0), r"HistogramObserver: bins .*got 0"),
    (lambda: tqx.MinMaxObserver(quant_min=0, quant_max=300), r"MinMaxObserver: quant_min/quant_max .*quant_max=300"),
    (lambda: tqx.MinMaxObserver(dtype=torch.qint8, quant_min=5, quant_max=1), r"quant_min=5, quant_max=1"),
    (lambda: tqx.MinMaxObserver(quant_min=0), r"MinMaxObserver: give both .*quant_max=None"),
], ids=lambda v: "" if callable(v) else v[:30])
def test_constructor_validation(ctor, pattern):
    with pytest.raises(ValueError, match=pattern):
        ctor()


def test_custom_class_constructor_validation():
    C = torch.classes.quantx
    with pytest.raises(RuntimeError, match=r"MinMaxObserver: quant_min should be <= quant_max, got quant_min=10, quant_max=5"):
        C.MinMaxObserver(10, 5, False, 1e-7)
    with pytest.raises(RuntimeError, match=r"MovingAverageMinMaxObserver: eps .*got -1"):
        C.MovingAverageMinMaxObserver(0, 255, False, 0.1, -1.0)
    with pytest.raises(RuntimeError, match=r"PerChannelMinMaxObserver: averaging_constant|PerChannelMinMaxObserver: quant_min"):
        C.PerChannelMinMaxObserver(0, 3, 1, False, 1e-7)
    with pytest.raises(RuntimeError, match=r"HistogramObserver: bins .*got 0"):
        C.HistogramObserver(0, 0, 255, False, 1e-7)
    obs = C.MinMaxObserver(-8, 7, True, 1e-7)
    obs.forward(torch.tensor([-2.0, 1.0]))
    scale, zp = obs.calculate_qparams()
    assert scale.tolist() == [torch.tensor(2.0 / 7.5).item()] and zp.tolist() == [0]


def test_describe_and_repr():
    obs = tqx.MovingAveragePerChannelMinMaxObserver(0.25, 1, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(torch.randn(2, 3))
    text = repr(obs)
    for piece in ("axis=1", "quant_min=-128", "quant_max=127", "symmetric=True", "averaging_constant=0.25", "batches=1"):
        assert piece in text, text


# --------------------------------------------------------------------------------------------
# TorchScript and serialization

OBSERVER_CASES = [
    (tqx.MinMaxObserver, dict(dtype=torch.qint8)),
    (tqx.MovingAverageMinMaxObserver, dict(averaging_constant=0.3)),
    (tqx.PerChannelMinMaxObserver, dict(ch_axis=1, qscheme=torch.per_channel_symmetric, dtype=torch.qint8)),
    (tqx.MovingAveragePerChannelMinMaxObserver, dict(averaging_constant=0.3, ch_axis=1, reduce_range=True)),
    (tqx.HistogramObserver, dict(bins=64, quant_min=0, quant_max=15)),
]


def save_load(module):
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    buf.seek(0)
    return torch.jit.load(buf)


def state(obs):
    return [*obs.calculate_qparams(), obs.observed_min(), obs.observed_max(), torch.tensor(obs.nonfinite_count())]


@pytest.mark.parametrize("cls,kw", OBSERVER_CASES, ids=[c.__name__ for c, _ in OBSERVER_CASES])
def test_script_save_load_round_trip_and_continue(gen, cls, kw):
    scripted = torch.jit.script(cls(**kw))
    twin = cls(**kw)
    xs = batches(gen, (4, 3, 5), 6)
    xs[1].view(-1)[:3] = torch.tensor([NAN, INF, -INF])
    for x in xs[:3]:
        assert scripted(x) is x
        twin(x)
    assert all(torch.equal(a, b) for a, b in zip(state(scripted), state(twin)))
    loaded = save_load(scripted)
    assert all(torch.equal(a, b) for a, b in zip(state(loaded), state(twin)))
    for x in xs[3:]:
        loaded(x)
        twin(x)
    assert all(torch.equal(a, b) for a, b in zip(state(loaded), state(twin)))
    if cls is tqx.HistogramObserver:
        assert torch.equal(loaded.histogram()[0], twin.histogram()[0])
        assert loaded.histogram()[1:] == twin.histogram()[1:]
        assert loaded.quantile(0.3) == twin.quantile(0.3)
    # a save before any data loads as an empty observer
    fresh = save_load(torch.jit.script(cls(**kw)))
    assert fresh.calculate_qparams()[0].tolist() == [1.0]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = tqx.HistogramObserver(bins=128)
        self.lin = torch.nn.Linear(6, 4)
        self.w = tqx.PerChannelMinMaxObserver(0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        self.out = tqx.MovingAverageMinMaxObserver(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.w(self.lin.weight)
        return self.out(self.lin(self.inp(x)))


def test_observers_inside_scripted_model_survive_save_load(gen):
    torch.manual_seed(0)
    net = torch.jit.script(Net())
    twin = Net()
    twin.load_state_dict(net.state_dict())
    xs = batches(gen, (8, 6), 6)
    for x in xs[:3]:
        assert torch.equal(net(x), twin(x))
    loaded = save_load(net)
    for x in xs[3:]:
        loaded(x)
        twin(x)
    for name in ("inp", "w", "out"):
        a, b = getattr(loaded, name), getattr(twin, name)
        assert all(torch.equal(u, v) for u, v in zip(state(a), state(b))), name


# --------------------------------------------------------------------------------------------
# HistogramObserver

def counts_total(h):
    return float(h.histogram()[0].sum())


def test_histogram_counts_and_range(isa, gen):
    h = tqx.HistogramObserver(bins=256)
    seen = []
    for s, m in ((0.1, 0.0), (5.0, 3.0), (0.001, -1.0), (100.0, 0.0), (1.0, 1e4)):
        x = torch.randn(1000 + int(s), generator=gen) * s + m
        x[:5] = torch.tensor([NAN, INF, -INF, NAN, 1.0])
        h(x)
        seen.append(x[torch.isfinite(x)])
        allx = torch.cat(seen)
        counts, lo, hi = h.histogram()
        assert counts.dtype == torch.float64 and counts.numel() == 256
        assert counts.sum().item() == allx.numel()  # integral counts: exact
        assert lo <= allx.min().item() and hi >= allx.max().item()
        assert h.observed_min().item() == allx.min().item() and h.observed_max().item() == allx.max().item()
        assert h.nonfinite_count() == 4 * len(seen)


def test_histogram_counts_close_to_histc(isa, gen):
    x = torch.randn(20000, generator=gen)
    h = tqx.HistogramObserver(bins=64)
    h(x)
    counts, lo, hi = h.histogram()
    assert lo == x.min().item()
    ref = torch.histc(x.double(), 64, min=lo, max=hi)
    # The same bins up to values sitting on a bin edge (float32 vs float64 edge arithmetic).
    assert (counts - ref).abs().sum().item() <= 10


def test_histogram_identical_on_every_isa(gen):
    x = [torch.randn(777, generator=gen) * s for s in (1.0, 20.0, 0.5)]
    results = []
    try:
        for name in ("scalar", "avx2", "avx512"):
            if not tqx._C.isa_supported(name):
                continue
            tqx.set_max_isa(name)
            h = tqx.HistogramObserver(bins=100)
            for b in x:
                h(b)
            results.append(h.histogram())
    finally:
        tqx.reset_max_isa()
    for r in results[1:]:
        assert torch.equal(r[0], results[0][0]) and r[1:] == results[0][1:]


def test_histogram_quantiles_of_normal_sample(gen):
    h = tqx.HistogramObserver()
    x = torch.randn(200000, generator=gen)
    h(x)
    assert abs(h.quantile(0.5)) < 0.02
    assert h.quantile(0.8413) == pytest.approx(1.0, abs=0.03)
    assert h.quantile(0.0228) == pytest.approx(-2.0, abs=0.03)
    assert h.quantile(0.0) == x.min().item() and h.quantile(1.0) == x.max().item()
    qs = [h.quantile(q / 20) for q in range(21)]
    assert qs == sorted(qs)
    with pytest.raises(RuntimeError, match=r"HistogramObserver.quantile: q should be in \[0, 1\], got 1.5"):
        h.quantile(1.5)
    assert math.isnan(tqx.HistogramObserver().quantile(0.5))


@pytest.mark.parametrize("bins", [(2048, 2048), (16, 16), (64, 7), (7, 64)], ids=str)
@pytest.mark.parametrize("data", ["disjoint", "nested", "constant", "huge", "point_then_wide"])
def test_histogram_merge_equals_observing_both(gen, bins, data):
    d1, d2 = {
        "disjoint": (torch.rand(1000, generator=gen), torch.rand(500, generator=gen) + 100),
        "nested": (torch.randn(1000, generator=gen), torch.randn(3000, generator=gen) * 1e-3),
        "constant": (torch.full((10,), 3.0), torch.full((5,), 3.0)),
        "huge": (torch.tensor([1e-6, 2e-6]), torch.tensor([-1e30, 1e30, 0.0])),
        "point_then_wide": (torch.tensor([5.0]), torch.randn(100, generator=gen)),
    }[data]
    d2 = torch.cat([d2, torch.tensor([NAN, INF])])
    a, b = tqx.HistogramObserver(bins=bins[0]), tqx.HistogramObserver(bins=bins[1])
    both = tqx.HistogramObserver(bins=bins[0])
    a(d1)
    b(d2)
    both(d1)
    both(d2)
    a.merge(b)
    n_finite = d1.numel() + d2.numel() - 2
    assert counts_total(a) == pytest.approx(n_finite, rel=1e-12)
    assert counts_total(both) == n_finite
    assert a.nonfinite_count() == both.nonfinite_count() == 2
    assert torch.equal(a.observed_min(), both.observed_min()) and torch.equal(a.observed_max(), both.observed_max())
    counts, lo, hi = a.histogram()
    assert counts.numel() == bins[0] and lo <= d1.min().item() and hi >= d2[:-2].max().item()
    assert all(torch.equal(u, v) for u, v in zip(a.calculate_qparams(), both.calculate_qparams()))
    assert b.impl.batches() == 1 and a.impl.batches() == 2  # the merged-in observer is untouched
    assert counts_total(b) == d2.numel() - 2


def test_histogram_merge_into_empty_and_of_empty(gen):
    src = tqx.HistogramObserver(bins=32)
    x = torch.randn(100, generator=gen)
    src(torch.cat([x, torch.tensor([NAN])]))
    dst = tqx.HistogramObserver(bins=32)
    dst.merge(src)
    assert torch.equal(dst.histogram()[0], src.histogram()[0]) and dst.histogram()[1:] == src.histogram()[1:]
    assert dst.nonfinite_count() == 1
    empty = tqx.HistogramObserver(bins=32)
    empty(torch.tensor([NAN, -INF]))  # nothing finite: only the count
    dst.merge(empty)
    assert counts_total(dst) == 100 and dst.nonfinite_count() == 3
    with pytest.raises(TypeError, match="HistogramObserver.merge: other should be a HistogramObserver, got MinMaxObserver"):
        dst.merge(tqx.MinMaxObserver())
