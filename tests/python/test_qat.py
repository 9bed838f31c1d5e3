"""Quantization-aware training: prepare_qat -> train -> convert (#6)."""
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torchquantx as tqx


class ConvBnReluLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.relu(self.bn(self.conv(x))), 1))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = F.relu(x + y)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _train(qat: torch.jit.ScriptModule, steps: int = 6, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(qat.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        x = torch.randn(16, 3, 8, 8, generator=g)
        y = torch.randint(0, 10, (16,), generator=g)
        loss = F.cross_entropy(qat(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _output_scale(qmodel: torch.jit.ScriptModule) -> float:
    return float(qmodel.graph.findAllNodes("quantx::linear")[-1].inputsAt(2).toIValue())


def _trained_eval(net):
    torch.manual_seed(0)
    qat = tqx.prepare_qat(net().train(), qconfig="fbgemm")
    _train(qat)
    tqx.freeze_bn_stats(qat)
    tqx.disable_observer(qat)
    return qat.eval()


@pytest.mark.parametrize("net", [ConvBnReluLinear, Residual])
def test_eval_mode_is_the_reference_model_exactly(net):
    # The reference target runs float ops between quantize/dequantize pairs: the numerics convert
    # promises. QAT's eval mode computes exactly that.
    qat = _trained_eval(net)
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(qat(x), tqx.convert(qat, target="reference")(x))


@pytest.mark.parametrize("net", [ConvBnReluLinear, Residual])
def test_eval_mode_matches_int8_model_within_one_lsb(net):
    qat = _trained_eval(net)
    qmodel = tqx.convert(qat)
    x = torch.randn(256, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = qat(x), qmodel(x)
    assert torch.isfinite(ref).all()
    lsb = (out - ref).abs() / _output_scale(qmodel)
    if net is ConvBnReluLinear:
        assert lsb.max().item() <= 1.01
    else:
        # The int8 kernels round inside the block (requantized residual add, average pooling) where
        # the reference model does not; that is PTQ's int8-vs-reference difference too (a few
        # outputs in a thousand at 2 LSB).
        assert lsb.max().item() <= 2.01
        assert (lsb > 1.01).float().mean().item() < 0.01


def test_parameters_are_trainable_and_change():
    torch.manual_seed(0)
    model = ConvBnReluLinear().train()
    qat = tqx.prepare_qat(model)
    names = {n for n, _ in qat.named_parameters()}
    assert {"conv_weight", "conv_bias", "bn_weight", "bn_bias", "fc_weight", "fc_bias"} <= names
    assert {n for n, _ in qat.named_buffers()} >= {"bn_running_mean", "bn_running_var"}
    before = {n: p.detach().clone() for n, p in qat.named_parameters()}
    rm = qat.bn_running_mean.clone()
    _train(qat, steps=2)
    for n, p in qat.named_parameters():
        assert not torch.equal(before[n], p.detach()), n
    assert not torch.equal(rm, qat.bn_running_mean)  # BatchNorm statistics keep updating
    assert torch.equal(model.conv.weight, before["conv_weight"])  # the float model is untouched


def test_freeze_bn_stats_and_disable_observer_stop_updates():
    torch.manual_seed(0)
    qat = tqx.prepare_qat(ConvBnReluLinear().train())
    _train(qat, steps=2)
    tqx.freeze_bn_stats(qat)
    tqx.disable_observer(qat)
    rm = qat.bn_running_mean.clone()
    fq = qat._c.getattr("_tqx_obs_0")
    lo, hi, batches = fq.min_val(), fq.max_val(), fq.batches()
    _train(qat, steps=2, seed=3)
    assert torch.equal(rm, qat.bn_running_mean)
    assert (fq.min_val(), fq.max_val(), fq.batches()) == (lo, hi, batches)
    tqx.enable_observer(qat)
    _train(qat, steps=1, seed=4)
    assert fq.batches() == batches + 1


def test_eval_mode_does_not_observe():
    torch.manual_seed(0)
    qat = tqx.prepare_qat(ConvBnReluLinear().train())
    _train(qat, steps=1)
    fq = qat._c.getattr("_tqx_obs_0")
    n = fq.batches()
    qat.eval()
    with torch.no_grad():
        qat(torch.randn(4, 3, 8, 8))
    assert fq.batches() == n


def test_fake_quantizers_sit_where_prepare_observes():
    torch.manual_seed(0)
    model = Residual()
    prepared = tqx.prepare(model.eval())
    qat = tqx.prepare_qat(model.train())

    def observed(m):
        return [n.inputsAt(1).node().kind() for n in m.graph.findAllNodes("prim::CallMethod")
                if n.inputsAt(0).node().s("name").startswith("_tqx_obs_")]
    # QAT reads conv outputs through qat_bn_output: compare the ops that produce the observed values.
    names = [k.replace("quantx::qat_bn_output", "aten::conv2d") for k in observed(qat)]
    assert names == observed(prepared)


def test_weight_fake_quant_matches_convert_grid():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3)
    fq = torch.ops.quantx.fake_quantize_weight(w, 8, True, True)
    scale = w.abs().amax(dim=(1, 2, 3)) / 127.5
    ref = torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(6, dtype=torch.int32), 0, -128, 127)
    assert torch.allclose(fq, ref, atol=0, rtol=0) or (fq - ref).abs().max() <= scale.max() * 1e-6
    w.requires_grad_(True)
    torch.ops.quantx.fake_quantize_weight(w, 8, True, True).sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    torch.fake_quantize_per_channel_affine(w2, scale, torch.zeros(6, dtype=torch.int32), 0, -128, 127).sum().backward()
    assert torch.equal(w.grad, w2.grad)  # straight-through inside the range


def test_raw_op_accepts_script_module_c():
    qat = torch.ops.quantx.prepare_qat(torch.jit.script(ConvBnReluLinear().train())._c, "x86")
    assert qat.hasattr("_tqx_qat")
    assert torch.ops.quantx.prepare_qat(ConvBnReluLinear().train())._c.hasattr("_tqx_qat")


def test_errors():
    with pytest.raises(ValueError, match="eval mode; call model.train"):
        tqx.prepare_qat(ConvBnReluLinear().eval())
    with pytest.raises(RuntimeError, match="training mode"):
        torch.ops.quantx.prepare_qat(torch.jit.script(ConvBnReluLinear().eval())._c, "x86")
    qat = tqx.prepare_qat(ConvBnReluLinear().train())
    _train(qat, steps=1)
    with pytest.raises(RuntimeError, match="QAT model is in training mode; call qat.eval"):
        tqx.convert(qat)
    with pytest.raises(TypeError, match="prepare_qat"):
        tqx.freeze_bn_stats(torch.jit.script(ConvBnReluLinear()))
    with pytest.raises(ValueError, match="qconfig"):
        tqx.prepare_qat(ConvBnReluLinear().train(), qconfig="nope")


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    qat = tqx.prepare_qat(ConvBnReluLinear().train())
    _train(qat, steps=2)
    path = str(tmp_path / "qat.pt")
    torch.jit.save(qat, path)
    loaded = torch.jit.load(path)
    qat.eval()
    loaded.eval()
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(qat(x), loaded(x))
    assert loaded._c.getattr("_tqx_obs_0").batches() == qat._c.getattr("_tqx_obs_0").batches()


def test_reference_model_qat_step_and_convert():
    from torchquantx.models import load_reference
    model = load_reference("resnet", pretrained=False) if "resnet" in tqx.models.reference_names() else None
    if model is None:
        model = load_reference(tqx.models.reference_names()[0], pretrained=False)
    qat = tqx.prepare_qat(model.train())
    opt = torch.optim.SGD(qat.parameters(), lr=1e-3)
    x = torch.randn(8, 1, 28, 28)
    loss = F.cross_entropy(qat(x), torch.randint(0, 10, (8,)))
    opt.zero_grad()
    loss.backward()
    opt.step()
    qmodel = tqx.convert(qat.eval())
    with torch.no_grad():
        assert qmodel(x).shape == (8, 10)


def test_skipped_layer_trains_in_float():
    torch.manual_seed(0)
    qat = tqx.prepare_qat(ConvBnReluLinear().train(), skip=["fc"])
    (fq,) = qat.graph.findAllNodes("quantx::fake_quantize_weight")
    assert fq.inputsAt(1).toIValue() == 0  # bits 0: the float weight, as convert will keep it
    _train(qat, steps=2)
    qat.eval()
    qmodel = tqx.convert(qat)
    assert not qmodel.graph.findAllNodes("quantx::linear")
    x = torch.randn(8, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(qat(x), tqx.convert(qat, target="reference")(x))


def test_learnable_qparams_train_and_convert_uses_them(tmp_path):
    torch.manual_seed(0)
    qat = tqx.prepare_qat(ConvBnReluLinear().train(), qconfig="onednn", learnable=True)
    lsq = tqx.learnable_qparams(qat)
    assert len(lsq) == 6 and all(any(p is q for q in qat.parameters()) for p in lsq)  # the optimizer sees them
    scales, zps = lsq[0::2], lsq[1::2]
    assert all(s.item() == 0 for s in scales)  # unset until the first training batch
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    opt = torch.optim.Adam(qat.parameters(), lr=1e-3)
    F.cross_entropy(qat(x), y).backward()
    # initialised from the observed range of that batch: the straight-through fake-quantizer's qparams
    fqs = [qat._c.getattr(f"_tqx_obs_{i}") for i in range(3)]
    assert [s.item() for s in scales] == [fq.calculate_qparams()[0].item() for fq in fqs]
    assert [z.item() for z in zps] == [float(fq.calculate_qparams()[1].item()) for fq in fqs]
    assert all(s.grad is not None and s.grad.item() != 0 for s in scales)
    assert all(z.grad is not None for z in zps)
    initial = [p.detach().clone() for p in lsq]
    opt.step()
    for _ in range(4):
        x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(qat(x), y).backward()
        opt.step()
    assert all(not torch.equal(a, p.detach()) for a, p in zip(initial, lsq))
    tqx.freeze_bn_stats(qat)
    qat.eval()
    # convert uses the learned qparams: the zero point rounded and clamped as forward_learnable does
    ref = tqx.convert(qat, target="reference")
    got = [(n.inputsAt(1).toIValue(), n.inputsAt(2).toIValue())
           for n in ref.graph.findAllNodes("aten::quantize_per_tensor")]
    want = [(torch.tensor(s.item(), dtype=torch.float32).item(), int(min(max(round(z.item()), 0), 255)))
            for s, z in zip(scales, zps)]
    assert got == want
    x = torch.randn(256, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    qmodel = tqx.convert(qat)
    with torch.no_grad():
        expected = qat(x)
        assert torch.equal(ref(x), expected)
        lsb = (qmodel(x) - expected).abs() / scales[-1].item()
    assert lsb.max().item() <= 1.01
    path = str(tmp_path / "lsq.pt")
    torch.jit.save(qat, path)
    with torch.no_grad():
        assert torch.equal(torch.jit.load(path).eval()(x), expected)


def test_learnable_scale_stays_positive():
    torch.manual_seed(0)
    qat = tqx.prepare_qat(ConvBnReluLinear().train(), learnable=True)
    qat(torch.randn(4, 3, 8, 8))
    with torch.no_grad():
        tqx.learnable_qparams(qat)[0].fill_(-1.0)  # an optimizer step past zero
    qat(torch.randn(4, 3, 8, 8))
    assert tqx.learnable_qparams(qat)[0].item() > 0


@pytest.mark.parametrize("learnable", [False, True], ids=["ste", "lsq"])
def test_optimizer_over_the_float_model_warns(learnable):
    torch.manual_seed(0)
    model = ConvBnReluLinear().train()
    wrong = torch.optim.SGD(model.parameters(), lr=0.1)  # built before prepare_qat
    qat = tqx.prepare_qat(model, learnable=learnable)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    with pytest.warns(UserWarning, match="optimizer does not hold them"):
        for _ in range(8):
            wrong.zero_grad()
            F.cross_entropy(qat(x), y).backward()
            wrong.step()
    right = tqx.prepare_qat(model, learnable=learnable)
    opt = torch.optim.SGD(right.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(10):
            opt.zero_grad()
            F.cross_entropy(right(x), y).backward()
            opt.step()


def test_training_forward_is_torch_ao_simulated_folding():
    # qat_fold_weight divides the folded weight where torch.ao's _ConvBnNd divides the conv output:
    # the same function (up to float rounding) and the same BatchNorm statistics update.
    torch.manual_seed(0)
    model = ConvBnReluLinear().train()
    qat = tqx.disable_fake_quant(tqx.prepare_qat(model, qconfig="fbgemm"))
    x = torch.randn(16, 3, 8, 8)
    out = qat(x)
    conv, bn, fc = model.conv, model.bn, model.fc
    sf = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    wq = torch.ops.quantx.fake_quantize_weight(conv.weight * sf.reshape(-1, 1, 1, 1), 8, True, True)
    y = F.conv2d(x, wq, None, padding=1) / sf.reshape(1, -1, 1, 1) + conv.bias.reshape(1, -1, 1, 1)
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    y = F.batch_norm(y, mean, var, bn.weight, bn.bias, True, bn.momentum, bn.eps)
    fcq = torch.ops.quantx.fake_quantize_weight(fc.weight, 8, True, True)
    ref = F.linear(torch.flatten(F.relu(y), 1), fcq, fc.bias)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert torch.allclose(qat.bn_running_mean, mean, rtol=1e-5, atol=1e-6)
    assert torch.allclose(qat.bn_running_var, var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("learnable", [False, True], ids=["ste", "lsq"])
def test_init_from_calibration(learnable):
    torch.manual_seed(0)
    model = Residual()
    prepared = tqx.prepare(model.eval(), qconfig="onednn", method="mse")
    tqx.calibrate(prepared, [torch.randn(16, 3, 8, 8) for _ in range(2)], progress=False)
    qat = tqx.prepare_qat(model.train(), qconfig="onednn", learnable=learnable)
    tqx.init_from_calibration(qat, prepared)
    fqs, observers = tqx.qat._fake_quantizers(qat._c), tqx.qat._fake_quantizers(prepared._c)
    want = [tuple(t.reshape(-1)[0].item() for t in o.calculate_qparams()) for o in observers]
    assert [tuple(t.reshape(-1)[0].item() for t in fq.calculate_qparams()) for fq in fqs] == want
    if learnable:
        lsq = tqx.learnable_qparams(qat)
        assert [(s.item(), z.item()) for s, z in zip(lsq[0::2], lsq[1::2])] == [(pytest.approx(s), z) for s, z in want]
    tqx.disable_observer(qat)
    _train(qat, steps=1)
    if not learnable:
        assert [tuple(t.reshape(-1)[0].item() for t in fq.calculate_qparams()) for fq in fqs] == want


def test_init_from_calibration_errors():
    model = ConvBnReluLinear()
    qat = tqx.prepare_qat(model.train(), qconfig="onednn")
    with pytest.raises(ValueError, match="calibrate"):
        tqx.init_from_calibration(qat, tqx.prepare(model.eval(), qconfig="onednn"))
    with pytest.raises(ValueError, match="same activation range"):
        tqx.init_from_calibration(qat, tqx.prepare(model.eval(), qconfig="fbgemm"))
    with pytest.raises(TypeError, match="torchquantx.prepare"):
        tqx.init_from_calibration(qat, qat)
