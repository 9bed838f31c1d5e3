"""AdaRound and the ptq pipeline from Python: per-layer output error below round-to-nearest at
4 bits, weights exactly on the grid that convert reproduces, the input left alone, misuse errors,
and tqx.ptq with each step switched."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import torchquantx as tqx


def sqnr_db(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (got - ref).pow(2).sum()))


class Net(nn.Module):
    """conv-bn-relu, strided conv-bn-relu, depthwise, 1x1, pool, linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU())
        self.c3 = nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        y = torch.relu(self.c3(self.dw(self.c2(self.c1(x)))))
        return self.fc(y.mean((2, 3)))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = Net().eval()
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    data = [torch.randn(16, 3, 16, 16) for _ in range(4)]
    prepared = tqx.prepare(model, weight_bits=4)
    rounded = tqx.adaround(prepared, data, iters=400, progress=False)
    return model, data, prepared, rounded


def weights(module):
    return [n.inputsAt(1).toIValue() for n in module.graph.nodes()
            if n.kind() in ("aten::conv2d", "aten::linear")]


def inner_elements(w):
    flat = w.flatten(1)
    shape = (-1,) + (1,) * (w.dim() - 1)
    return (w > flat.amin(1).view(shape)) & (w < flat.amax(1).view(shape))


def test_layer_error_and_model_accuracy_improve(setup):
    model, data, prepared, rounded = setup
    report = tqx.adaround_report(rounded)
    assert len(report) == 5
    for layer, nearest, ada in report:
        assert ada < nearest, (layer, nearest, ada)
    x = torch.cat(data)
    ref = model(x)
    db = {}
    for name, mod in (("nearest", prepared), ("adaround", rounded)):
        tqx.calibrate(mod, data, progress=False)
        db[name] = sqnr_db(tqx.convert(mod)(x), ref)
    assert db["adaround"] > db["nearest"] + 1.0, db


def test_weights_on_grid_and_convert_reproduces_them(setup):
    _, data, prepared, rounded = setup
    before, after = weights(prepared), weights(rounded)
    changed = 0
    for w0, w in zip(before, after):
        s = w0.abs().flatten(1).amax(1) / 7.5  # symmetric 4-bit scale, per channel, of the original
        assert torch.equal(w.abs().flatten(1).amax(1), w0.abs().flatten(1).amax(1))  # scales unchanged
        q = w / s.view(-1, *([1] * (w.dim() - 1)))
        assert q.max() <= 7.5 + 1e-4 and q.min() >= -8 - 1e-4
        inner = inner_elements(w)  # a channel's min and max keep their values (they set the qparams)
        assert (q[inner] - q[inner].round()).abs().max() < 1e-3  # on a grid point
        rtn = torch.clamp(torch.round(w0 / s.view(-1, *([1] * (w.dim() - 1)))), -8, 7)
        changed += int((q.round() != rtn).sum())
    assert changed > 0
    tqx.calibrate(rounded, data, progress=False)
    q = tqx.convert(rounded, target="native")
    packed = [getattr(q, n.inputsAt(1).node().s("name")).unpack()[0] for n in q.graph.nodes()
              if n.kind().startswith("quantized::conv2d") or n.kind().startswith("quantized::linear")]
    assert len(packed) == 5
    for wq, w in zip(packed, after):
        assert torch.equal(wq.dequantize()[inner_elements(w)], w[inner_elements(w)])


def test_input_not_mutated(setup):
    model, data, prepared, _ = setup
    before = [w.clone() for w in weights(prepared)]
    tqx.adaround(prepared, data[:1], iters=5, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(prepared)))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tqx.adaround(model, data[:1], iters=5, progress=False, qconfig="x86;weight_bits=4")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_bad_inputs_name_the_argument(setup):
    model, data, prepared, _ = setup
    with pytest.raises(ValueError, match="data yielded no batches"):
        tqx.adaround(prepared, [], progress=False)
    with pytest.raises(ValueError, match="iters should be an int >= 0, got -1"):
        tqx.adaround(prepared, data, iters=-1, progress=False)
    with pytest.raises(RuntimeError, match="leave qconfig unset, got 'x86'"):
        tqx.adaround(prepared, data, qconfig="x86", progress=False)
    with pytest.raises(ValueError, match="qconfig should start with one of"):
        tqx.adaround(model, data, qconfig="bogus", progress=False)
    with pytest.raises(ValueError, match="training mode"):
        tqx.adaround(Net().train(), data, progress=False)
    with pytest.raises(RuntimeError, match="already converted"):
        p = tqx.prepare(model)
        tqx.calibrate(p, data, progress=False)
        tqx.adaround(tqx.convert(p), data, progress=False)


def test_ptq_steps_switch(setup):
    model, data, _, _ = setup
    x = torch.cat(data)
    ref = model(x)
    plain = tqx.ptq(model, data, {"equalize": False, "adaround": False, "bias_correction": False,
                                  "method": "minmax"}, weight_bits=4, progress=False)
    full = tqx.ptq(model, data, {"adaround_iters": 300}, weight_bits=4, progress=False)
    assert sqnr_db(full(x), ref) > sqnr_db(plain(x), ref) + 1.0
    for step in ("equalize", "adaround", "bias_correction"):
        only = tqx.ptq(model, data, {"equalize": False, "adaround": False, "bias_correction": False,
                                     step: True, "adaround_iters": 50}, qconfig="qnnpack", progress=False,
                       target="native")
        assert sqnr_db(only(x), ref) > 10
    with pytest.raises(ValueError, match=r"unknown recipe keys \['adaroud'\]"):
        tqx.ptq(model, data, {"adaroud": True}, progress=False)
