"""Accuracy recovery from Python: tqx.equalize and tqx.bias_correction over nn.Modules and
prepared models, their numbers against fp32, saving, and the messages of misuse."""
from __future__ import annotations

import torch
import torch.nn as nn
import pytest

import torchquantx as tqx


def sqnr_db(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (got - ref).pow(2).sum()))


def conv_biases(module: torch.jit.ScriptModule):
    return [n.inputsAt(2).toIValue() for n in module.graph.findAllNodes("aten::conv2d")]


class Mobile(nn.Module):
    """conv-bn-act -> depthwise conv-bn-act -> 1x1 conv-act -> pool -> linear."""

    def __init__(self, act=nn.ReLU):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), act())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), act())
        self.pw = nn.Sequential(nn.Conv2d(8, 16, 1), act())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        y = self.pw(self.dw(self.conv(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


class Imbalanced(nn.Module):
    """conv -> relu -> conv, half of the first conv's channels 100x larger and compensated."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 1)
        with torch.no_grad():
            self.c1.weight[:4] *= 100
            self.c1.bias[:4] *= 100
            self.c2.weight[:, :4] /= 100

    def forward(self, x):
        return self.c2(torch.relu(self.c1(x)))


class MixedRanges(nn.Module):
    """conv -> relu -> conv whose first output channels are 40x larger: per-tensor int8 weights
    round the small channels coarsely, with a mean error that does not average out."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 1)
        with torch.no_grad():
            self.c2.weight[:2] *= 40

    def forward(self, x):
        return self.c2(torch.relu(self.c1(x)))


def quantized(model, data, qconfig="qnnpack"):
    prepared = tqx.prepare(model, qconfig) if not hasattr(model, "_c") or not model._c.hasattr("_tqx_qconfig") \
        else model
    tqx.calibrate(prepared, data, progress=False)
    return tqx.convert(prepared)


def test_equalize_keeps_the_float_function_and_equalizes(gen):
    torch.manual_seed(0)
    model = Mobile().eval()
    eq = tqx.equalize(model)
    assert eq._c.getattr("_tqx_equalized").startswith("pairs=3 ")
    x = torch.randn(4, 3, 16, 16, generator=gen)
    with torch.no_grad():
        assert torch.allclose(eq(x), model(x), rtol=1e-4, atol=1e-5)
    convs = eq.graph.findAllNodes("aten::conv2d")
    w1, w2 = convs[0].inputsAt(1).toIValue(), convs[1].inputsAt(1).toIValue()
    r1 = w1.abs().flatten(1).amax(1)
    r2 = w2.abs().flatten(1).amax(1)  # depthwise: input channel i is output channel i
    assert torch.allclose(r1, r2, rtol=1e-3)


def test_equalize_improves_per_tensor_w8a8(gen):
    torch.manual_seed(1)
    model = Imbalanced().eval()
    calib = [torch.randn(4, 3, 12, 12, generator=gen) for _ in range(4)]
    x = torch.randn(8, 3, 12, 12, generator=gen)
    with torch.no_grad():
        ref = model(x)
        before = sqnr_db(quantized(model, calib)(x), ref)
        after = sqnr_db(quantized(tqx.equalize(model), calib)(x), ref)
    print(f"equalize: per-tensor W8A8 (qnnpack) SQNR {before:.1f} dB -> {after:.1f} dB")
    assert after > before + 10


def test_relu6_pairs_need_relu6_to_relu(gen):
    torch.manual_seed(2)
    model = Mobile(act=nn.ReLU6).eval()
    kept = tqx.equalize(model)
    report = kept._c.getattr("_tqx_equalized")
    assert "relu6_skipped=3" in report and report.startswith("pairs=0 "), report
    relu = tqx.equalize(model, relu6_to_relu=True)
    assert "relu6_replaced=3" in relu._c.getattr("_tqx_equalized")
    assert not relu.graph.findAllNodes("aten::hardtanh")
    # The function is that of the same network with ReLU.
    reference = Mobile(act=nn.ReLU).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16, generator=gen)
    with torch.no_grad():
        assert torch.allclose(relu(x), reference(x), rtol=1e-4, atol=1e-5)


def test_equalized_model_saves_loads_and_keeps_batchnorm_statistics(tmp_path, gen):
    torch.manual_seed(3)
    model = Mobile().eval()
    with torch.no_grad():
        model.conv[1].bias.fill_(3.0)  # a high bias to absorb
    eq = tqx.equalize(model)
    assert "absorbed=" in eq._c.getattr("_tqx_equalized")
    path = str(tmp_path / "eq.pt")
    torch.jit.save(eq, path)
    loaded = torch.jit.load(path)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    assert torch.equal(loaded(x), eq(x))
    corrected = tqx.bias_correction(loaded, qconfig="qnnpack")  # data-free: reads the kept statistics
    assert any(not torch.equal(a, b) for a, b in zip(conv_biases(corrected), conv_biases(eq)))


def mean_error(q, model, data):
    with torch.no_grad():
        return sum(float((q(x) - model(x)).mean((0, 2, 3)).abs().mean()) for x in data) / len(data)


def test_bias_correction_with_a_loader_shrinks_the_mean_error(gen):
    torch.manual_seed(4)
    model = MixedRanges().eval()
    calib = [(torch.rand(8, 3, 12, 12, generator=gen), 0) for _ in range(4)]
    test = [torch.rand(8, 3, 12, 12, generator=gen) for _ in range(4)]
    prepared = tqx.prepare(model, "qnnpack")
    snapshot = [b.clone() for b in conv_biases(prepared)]
    corrected = tqx.bias_correction(prepared, calib, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(conv_biases(prepared), snapshot))  # input untouched
    before = mean_error(quantized(prepared, calib), model, test)
    after = mean_error(quantized(corrected, calib), model, test)
    print(f"bias_correction: per-tensor W8A8 (qnnpack) mean output error {before:.4f} -> {after:.4f}")
    assert after < 0.3 * before


def test_streamed_python_loop_equals_the_one_shot_operator(gen):
    torch.manual_seed(5)
    prepared = tqx.prepare(MixedRanges().eval(), "qnnpack")
    data = [torch.rand(4, 3, 12, 12, generator=gen) for _ in range(3)]
    streamed = tqx.bias_correction(prepared, data, num_batches=2, progress=False)
    one_shot = torch.jit._recursive.wrap_cpp_module(
        torch.ops.quantx.bias_correction(prepared._c, [[x] for x in data[:2]], None))
    for a, b in zip(conv_biases(streamed), conv_biases(one_shot)):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)


def test_bias_correction_of_a_float_model_and_data_free(gen):
    torch.manual_seed(6)
    model = MixedRanges().eval()
    data = [torch.rand(8, 3, 12, 12, generator=gen) for _ in range(4)]
    corrected = tqx.bias_correction(model, data, qconfig="qnnpack", progress=False)
    before = mean_error(quantized(model, data), model, data)
    assert mean_error(quantized(corrected, data), model, data) < 0.3 * before
    # Without BatchNorm there is nothing to reason from: data-free correction changes nothing.
    same = tqx.bias_correction(model, qconfig="qnnpack")
    assert [torch.equal(a, b) for a, b in zip(conv_biases(same), (model.c1.bias, model.c2.bias))] == [True, True]


def test_bias_correction_reaches_layers_behind_relu6_and_pooling(gen):
    # In a prepared model, the input of a layer after ReLU6 or pooling is observed before them.
    torch.manual_seed(7)
    prepared = tqx.prepare(Mobile(act=nn.ReLU6).eval(), "qnnpack")
    corrected = tqx.bias_correction(prepared, [torch.rand(4, 3, 16, 16, generator=gen)], progress=False)
    layers = ("aten::conv2d", "aten::linear")
    before = [n.inputsAt(2).toIValue() for k in layers for n in prepared.graph.findAllNodes(k)]
    after = [n.inputsAt(2).toIValue() for k in layers for n in corrected.graph.findAllNodes(k)]
    assert len(before) == 4 and all(not torch.equal(a, b) for a, b in zip(before, after))


def test_bias_correction_shows_a_progress_bar(capsys, gen):
    prepared = tqx.prepare(MixedRanges().eval(), "qnnpack")
    tqx.bias_correction(prepared, [torch.rand(2, 3, 8, 8, generator=gen) for _ in range(2)])
    assert "bias_correction" in capsys.readouterr().err


def test_misuse_is_reported():
    model = MixedRanges().eval()
    prepared = tqx.prepare(model)
    with pytest.raises(TypeError, match="torch.nn.Module or a ScriptModule"):
        tqx.equalize("model")
    with pytest.raises(ValueError, match="training mode"):
        tqx.equalize(MixedRanges())
    with pytest.raises(RuntimeError, match="already prepared"):
        tqx.equalize(prepared)
    with pytest.raises(RuntimeError, match="carries its own qconfig"):
        tqx.bias_correction(prepared, [torch.rand(1, 3, 8, 8)], qconfig="qnnpack", progress=False)
    with pytest.raises(RuntimeError, match="BatchNorm statistics"):
        tqx.bias_correction(prepared)
    with pytest.raises(ValueError, match="no batches"):
        tqx.bias_correction(prepared, [], progress=False)
    with pytest.raises(ValueError, match="num_batches should be >= 1"):
        tqx.bias_correction(prepared, [torch.rand(1, 3, 8, 8)], num_batches=0)
    with pytest.raises(ValueError, match="qconfig should be one of"):
        tqx.bias_correction(model, [torch.rand(1, 3, 8, 8)], qconfig="int4")
    with pytest.raises(RuntimeError, match="batch 0 failed inside the model"):
        tqx.bias_correction(prepared, [torch.rand(1, 5, 8, 8)], progress=False)
