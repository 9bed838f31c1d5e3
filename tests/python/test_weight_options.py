"""Weight options of tqx.prepare: 4/8/16 bits, per-channel or per-tensor, symmetric or affine -
the converted weights' integer ranges and qschemes, accuracy ordering, summaries, save/load."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn

import torchquantx as tqx


def sqnr_db(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (got - ref).pow(2).sum()))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        y = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(torch.flatten(y, 1))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = Net().eval()
    data = [torch.randn(8, 3, 8, 8) for _ in range(2)]
    return model, data


def converted(model, data, target="native", **kw):
    prepared = tqx.prepare(model, **kw)
    tqx.calibrate(prepared, data, progress=False)
    return tqx.convert(prepared, target=target)


def packed_weights(qmodel):
    """The qint8 weights of every native packed conv/linear."""
    out = []
    for node in qmodel.graph.nodes():
        kind = node.kind()
        if kind in ("quantized::conv2d", "quantized::conv2d_relu", "quantized::linear", "quantized::linear_relu"):
            packed = getattr(qmodel, node.inputsAt(1).node().s("name"))
            out.append(packed.unpack()[0])
    return out


@pytest.mark.parametrize("per_channel", [True, False])
def test_four_bit_weights_are_qint8_in_range(setup, per_channel):
    model, data = setup
    q = converted(model, data, weight_bits=4, weight_per_channel=per_channel)
    ws = packed_weights(q)
    assert len(ws) == 3
    for w in ws:
        assert w.dtype == torch.qint8
        assert w.qscheme() == (torch.per_channel_affine if per_channel else torch.per_tensor_affine)
        r = w.int_repr()
        assert r.min() >= -8 and r.max() <= 7 and r.abs().max() >= 7
    assert "weights: w4" in tqx.summary(q, file=io.StringIO())


def test_eight_bit_default_range(setup):
    model, data = setup
    for w in packed_weights(converted(model, data)):
        assert w.int_repr().min() >= -128 and w.int_repr().abs().max() >= 126
        assert (w.q_per_channel_zero_points() == 0).all()


@pytest.mark.parametrize("target", ["quantx", "native", "reference"])
def test_accuracy_orders_by_bits(setup, target):
    model, data = setup
    x = data[0]
    ref = model(x)
    db = {bits: sqnr_db(converted(model, data, target, weight_bits=bits)(x), ref) for bits in (4, 8, 16)}
    assert db[16] > db[8] > db[4] > 10, db


def test_sixteen_bit_and_affine_run_float_on_rounded_weights(setup):
    model, data = setup
    for kw, phrase in (({"weight_bits": 16}, "W16A8 simulation"),
                       ({"weight_symmetric": False}, "no int8 kernel takes affine weights")):
        for target in ("quantx", "native"):
            q = converted(model, data, target, **kw)
            text = tqx.summary(q, file=io.StringIO())
            assert text.count(phrase) == 3, text
            assert "simulated" in text.splitlines()[1]
            convs = q.graph.findAllNodes("aten::conv2d")
            assert len(convs) == 2  # float convolutions between quantize/dequantize pairs
            w = convs[0].inputsAt(1).toIValue()
            if kw.get("weight_bits") == 16:  # on the int16 grid of its channel
                s = model.c1.weight.detach().abs().flatten(1).amax(1) / 32767.5
                steps = w / s.view(-1, 1, 1, 1)
                assert (steps - steps.round()).abs().max() < 1e-2
            assert sqnr_db(q(data[0]), model(data[0])) > 20


def test_save_load_round_trip(setup, tmp_path):
    model, data = setup
    for kw in ({"weight_bits": 4}, {"weight_bits": 16}, {"weight_symmetric": False, "weight_per_channel": False}):
        prepared = tqx.prepare(model, **kw)
        path = tmp_path / "prepared.pt"
        torch.jit.save(prepared, str(path))
        loaded = torch.jit.load(str(path))
        tqx.calibrate(loaded, data, progress=False)
        q = tqx.convert(loaded)
        torch.jit.save(q, str(tmp_path / "q.pt"))
        back = torch.jit.load(str(tmp_path / "q.pt"))
        assert torch.equal(back(data[0]), q(data[0]))
        assert f"weight_bits={kw.get('weight_bits', 8)}" in loaded._c.getattr("_tqx_qconfig")


def test_bad_weight_options_name_the_argument(setup):
    model, _ = setup
    with pytest.raises(ValueError, match="weight_bits should be 4, 8 or 16, got 2"):
        tqx.prepare(model, weight_bits=2)
    with pytest.raises(ValueError, match="weight_symmetric should be True or False, got 'yes'"):
        tqx.prepare(model, weight_symmetric="yes")


def test_bias_correction_uses_the_weight_spec(setup):
    model, data = setup
    prepared = tqx.prepare(model, "qnnpack", weight_bits=4)
    corrected = tqx.bias_correction(prepared, data, progress=False)
    tqx.calibrate(corrected, data, progress=False)
    tqx.calibrate(prepared, data, progress=False)
    x = torch.cat(data)
    ref = model(x)
    err = lambda q: float((q(x) - ref).mean(0).abs().mean())
    assert err(tqx.convert(corrected)) < err(tqx.convert(prepared))
