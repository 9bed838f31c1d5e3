"""The prepare -> calibrate -> convert API: behaviour, guarantees and error messages."""
import io
import math
import re

import pytest
import torch
from torch import nn

import torchquantx as tqx


class Net(nn.Module):
    """conv-bn-relu, a residual add, pooling and a classifier: the common shapes of a CNN."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.conv2(y) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


def make_net(seed=0):
    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():  # realistic BatchNorm statistics
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 1.5)
    return net.eval()


def batches(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 16, 16, generator=g) for _ in range(n)]


def sqnr(ref, out):
    return 10 * math.log10(ref.pow(2).sum().item() / (ref - out).pow(2).sum().item())


def quantized(model=None, target=None, **kw):
    p = tqx.prepare(model or make_net(), **kw)
    tqx.calibrate(p, batches(), progress=False)
    return p, (tqx.convert(p) if target is None else tqx.convert(p, target))


def test_end_to_end_is_int8_and_close_to_float():
    model = make_net()
    _, q = quantized(model)  # the default target: torchquantx's kernels
    text = tqx.summary(q, file=io.StringIO())
    assert text.startswith("target=quantx")
    assert "-> quantx::conv2d(relu)" in text and "-> quantx::conv2d_add(relu)" in text and "-> quantx::linear" in text
    assert "-> float" not in text
    x = batches(1, seed=9)[0]
    assert sqnr(model(x), q(x)) > 25


def test_prepare_does_not_change_the_model():
    model = make_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scripted = torch.jit.script(model)
    graph_before = str(scripted.graph)
    tqx.prepare(model)
    tqx.prepare(scripted)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert str(scripted.graph) == graph_before
    assert isinstance(model.bn1, nn.BatchNorm2d)


def test_torch_ops_entry_points_accept_modules():
    model = make_net()
    for entry in (model, torch.jit.script(model)):
        p = torch.ops.quantx.prepare(entry)
        tqx.calibrate(p, batches(2), progress=False)
        q = torch.ops.quantx.convert(p)
        x = batches(1)[0]
        assert q(x).shape == (2, 4)
    raw = torch.ops.quantx.prepare(torch.jit.script(model)._c)  # the dispatcher op itself
    assert raw.hasattr("_tqx_obs_0")


def test_convert_leaves_prepared_usable_and_can_repeat():
    p, q1 = quantized()
    q2 = tqx.convert(p)
    x = batches(1, seed=5)[0]
    assert torch.equal(q1(x), q2(x))
    assert "observes" in tqx.summary(p, file=io.StringIO())


def test_save_load_round_trip_is_bit_identical(tmp_path):
    _, q = quantized()
    path = tmp_path / "m.pt"
    torch.jit.save(q, str(path))
    loaded = torch.jit.load(str(path))
    x = batches(1, seed=3)[0]
    assert torch.equal(loaded(x), q(x))


def test_reference_target_matches_native_closely():
    p, q = quantized()
    ref = tqx.convert(p, target="reference")
    assert "quantized::" not in str(ref.graph)
    x = batches(1, seed=4)[0]
    assert sqnr(ref(x), q(x)) > 30


def test_skip_keeps_modules_in_float():
    _, q = quantized(skip=["fc"])
    text = tqx.summary(q, file=io.StringIO())
    assert "fc  aten::linear -> float (skipped by request)" in text
    assert "quantized::linear" not in text


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


class TwoBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a, self.b = Block(), Block()

    def forward(self, x):
        return self.b(self.a(self.stem(x)))


@pytest.mark.parametrize("skip_types", [(Block,), ("Block",)])
def test_skip_types_keeps_module_classes_in_float(skip_types):
    torch.manual_seed(0)
    _, q = quantized(TwoBlocks().eval(), target="native", skip_types=skip_types)
    text = tqx.summary(q, file=io.StringIO())
    assert "stem  aten::conv2d -> quantized::conv2d" in text
    assert "a.conv  aten::conv2d -> float (skipped by request)" in text
    assert "b.conv  aten::conv2d -> float (skipped by request)" in text


def test_calibrate_accepts_pairs_loaders_and_input_fn():
    data = [(x, torch.zeros(2)) for x in batches(2)]
    p = tqx.prepare(make_net())
    tqx.calibrate(p, data, progress=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 3, 16, 16)), batch_size=4)
    tqx.calibrate(p, loader, progress=False)
    tqx.calibrate(p, [{"img": batches(1)[0]}], progress=False, input_fn=lambda b: (b["img"],))
    _, batches_seen, _ = torch.ops.quantx.observer_stats(p._c)
    assert min(batches_seen) == 5


def test_calibrate_progress_bar_and_num_batches(capsys):
    p = tqx.prepare(make_net())
    tqx.calibrate(p, batches(6), num_batches=3, progress=True)
    assert "calibrate" in capsys.readouterr().err
    _, seen, _ = torch.ops.quantx.observer_stats(p._c)
    assert set(seen) == {3}


def test_ctrl_c_keeps_statistics_and_model_usable():
    def data():
        yield from batches(2)
        raise KeyboardInterrupt

    p = tqx.prepare(make_net())
    with pytest.raises(KeyboardInterrupt):
        tqx.calibrate(p, data(), progress=False)
    _, seen, _ = torch.ops.quantx.observer_stats(p._c)
    assert set(seen) == {2}
    q = tqx.convert(p)
    assert torch.isfinite(q(batches(1)[0])).all()


class Unscriptable(nn.Module):
    def forward(self, x):
        return x * len({"a": x}.items().__iter__().__next__())  # not TorchScript


def test_errors_are_clear():
    with pytest.raises(ValueError, match="training mode; call model.eval"):
        tqx.prepare(Net().train())
    with pytest.raises(RuntimeError, match="(?s)could not compile Unscriptable.*<--- HERE.*example_inputs="):
        tqx.prepare(Unscriptable().eval())
    with pytest.raises(ValueError, match="qconfig should be one of x86, fbgemm, onednn, qnnpack, got 'arm'"):
        tqx.prepare(make_net(), "arm")
    with pytest.raises(ValueError, match="observer should be one of"):
        tqx.prepare(make_net(), observer="kl")
    p = tqx.prepare(make_net())
    with pytest.raises(RuntimeError, match="(?s)5 of 5 observers saw no data; run calibration first.*\n  input .x."):
        tqx.convert(p)
    with pytest.raises(ValueError, match="the data yielded no batches"):
        tqx.calibrate(p, [], progress=False)
    with pytest.raises(RuntimeError, match=r"batch 0 failed inside the model \(check its shape and dtype\)"):
        tqx.calibrate(p, [torch.randn(2, 5, 16, 16)], progress=False)
    with pytest.raises(ValueError, match="target should be one of quantx, native, reference"):
        tqx.convert(p, target="tensorrt")
    with pytest.raises(TypeError, match="pass the module returned by torchquantx.prepare"):
        tqx.calibrate(torch.jit.script(make_net()), batches(1), progress=False)


def test_nan_in_calibration_data_names_the_place():
    p = tqx.prepare(make_net())
    bad = batches(1)[0].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"batch 0 produced NaN or Inf at\n  input 'x': 1 values"):
        tqx.calibrate(p, [bad], progress=False)


def test_traced_model_with_example_inputs():
    model = make_net()
    p = tqx.prepare(model, example_inputs=(batches(1)[0],))
    tqx.calibrate(p, batches(2), progress=False)
    q = tqx.convert(p, target="native")
    x = batches(1, seed=7)[0]
    assert sqnr(model(x), q(x)) > 25
    # Tracing records aten::_convolution; it must still lower to int8 convolutions, not stay float.
    graph = str(q.graph)
    assert graph.count("quantized::conv2d") == 2 and "aten::_convolution" not in graph


@pytest.mark.parametrize("qconfig", ["x86", "fbgemm", "onednn", "qnnpack"])
def test_presets(qconfig):
    model = make_net()
    p = tqx.prepare(model, qconfig)
    tqx.calibrate(p, batches(), progress=False)
    q = tqx.convert(p)
    x = batches(1, seed=8)[0]
    assert sqnr(model(x), q(x)) > 20
    first = tqx.summary(p, file=io.StringIO()).splitlines()[1]
    assert ("quant_max=127" in first) == (qconfig in ("x86", "fbgemm"))  # reduce_range presets


class Stubbed(nn.Module):
    """Only the middle conv is inside the stubs; the first conv and the head stay in float."""

    def __init__(self, stubs):
        super().__init__()
        quant, dequant = stubs
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1)
        self.quant, self.dequant = quant(), dequant()
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.dequant(torch.relu(self.conv1(self.quant(self.conv0(x)))))
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("stubs", [(tqx.QuantStub, tqx.DeQuantStub),
                                   (torch.ao.quantization.QuantStub, torch.ao.quantization.DeQuantStub)],
                         ids=["torchquantx", "torch.ao"])
def test_stubs_limit_the_quantized_region(stubs):
    torch.manual_seed(0)
    model = Stubbed(stubs).eval()
    p, q = quantized(model, target="native")
    text = tqx.summary(q, file=io.StringIO())
    assert "conv1  aten::conv2d + aten::relu -> quantized::conv2d_relu" in text
    assert "conv0  aten::conv2d -> float" in text and "fc  aten::linear -> float" in text
    assert "quant_stub" not in str(q.graph)  # the converted model does not depend on torchquantx
    x = batches(1)[0]
    assert sqnr(model(x), q(x)) > 25
    assert isinstance(model.quant, stubs[0])  # the user's model keeps its own stubs


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_quantize_dynamic_linear_matches_torch_dynamic():
    torch.manual_seed(0)
    model = MLP().eval()
    q = tqx.quantize_dynamic(model, per_channel=False, reduce_range=True)  # torch.ao's defaults
    assert str(q.graph).count("quantized::linear_dynamic") == 2 and "aten::linear" not in str(q.graph)
    theirs = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    x = torch.randn(16, 32)
    # Same per-tensor int8 weights, 7-bit activations and onednn kernels: identical outputs.
    torch.backends.quantized.engine = "onednn"
    assert torch.equal(q(x), theirs(x))
    assert sqnr(model(x), tqx.quantize_dynamic(model)(x)) > 30
    buf = io.BytesIO()
    torch.jit.save(q, buf)
    buf.seek(0)
    assert torch.equal(torch.jit.load(buf)(x), q(x))
    with pytest.raises(ValueError, match="dtype should be torch.qint8"):
        tqx.quantize_dynamic(model, dtype=torch.float16)


@pytest.mark.parametrize("dtype,ratio,min_sqnr", [(torch.qint8, 0.30, 30), (torch.int16, 0.55, 75)])
def test_weight_only_quantization_shrinks_file_and_loads_in_plain_torch(tmp_path, dtype, ratio, min_sqnr):
    import subprocess
    import sys
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 14 * 14, 64)).eval()
    q = tqx.quantize_weights(model, dtype)
    assert "dequantized at load" in tqx.summary(q, file=io.StringIO())
    fp32, int_path = tmp_path / "fp32.pt", tmp_path / "w.pt"
    torch.jit.save(torch.jit.script(model), str(fp32))
    torch.jit.save(q, str(int_path))
    assert int_path.stat().st_size < ratio * fp32.stat().st_size
    x = torch.randn(2, 3, 16, 16)
    torch.save(x, str(tmp_path / "x.pt"))
    assert sqnr(model(x), q(x)) > min_sqnr
    # A process without torchquantx loads it (the float weights are rebuilt by __setstate__).
    code = (f"import torch; m = torch.jit.load({str(int_path)!r}); "
            f"torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PATH": "/usr/bin:/bin"})
    assert torch.equal(torch.load(str(tmp_path / "y.pt")), q(x))
    with pytest.raises(ValueError, match="dtype should be torch.qint8, torch.int8 or torch.int16"):
        tqx.quantize_weights(model, torch.float16)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(16, 32, num_layers=2, batch_first=True)
        self.gru = nn.GRU(32, 24, bidirectional=True)
        self.head = nn.Linear(48, 5)

    def forward(self, x):
        y, _ = self.lstm(x)
        z, _ = self.gru(y)
        return self.head(z)


def test_quantize_dynamic_lstm_gru_match_torch_dynamic():
    torch.manual_seed(0)
    model = Recurrent().eval()
    ours = tqx.quantize_dynamic(model, per_channel=False, reduce_range=True)
    text = tqx.summary(ours, file=io.StringIO())
    assert "aten::lstm -> aten::quantized_lstm" in text and "aten::gru -> aten::quantized_gru" in text
    torch.backends.quantized.engine = "onednn"
    theirs = torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.GRU, nn.Linear}, dtype=torch.qint8)
    x = torch.randn(3, 7, 16)
    assert torch.equal(ours(x), theirs(x))
    assert sqnr(model(x), tqx.quantize_dynamic(model)(x)) > 25
    buf = io.BytesIO()
    torch.jit.save(ours, buf)
    buf.seek(0)
    assert torch.equal(torch.jit.load(buf)(x), ours(x))


def test_quantx_target_matches_native_within_one_lsb(tmp_path):
    torch.backends.quantized.engine = "onednn"
    model = make_net()
    # 8-bit activations, except where PyTorch's kernels would saturate them (native_int8_saturates).
    p = tqx.prepare(model, "x86" if tqx.native_int8_saturates() else "onednn")
    tqx.calibrate(p, batches(), progress=False)
    native, ours = tqx.convert(p, target="native"), tqx.convert(p, target="quantx")
    text = tqx.summary(ours, file=io.StringIO())
    assert "quantx::conv2d(relu)" in text and "quantx::add(relu)" in text and "quantx::linear" in text
    # conv2 + add + relu run as one fused op; the input is quantized by our kernel, channels-last.
    assert "quantx::conv2d + quantx::add -> quantx::conv2d_add(relu)" in text
    graph = str(ours.graph)
    assert "quantx::conv2d_add" in graph and "quantx::add(" not in graph
    assert "quantx::quantize_nhwc" in graph and "aten::quantize_per_tensor" not in graph
    assert "-> float" not in text  # no quantx op is reported as running in float
    x = batches(1, seed=11)[0]
    out_scale = float(text.split("quantx::linear  out(scale=")[1].split(",")[0])
    assert float((ours(x) - native(x)).abs().max()) <= out_scale * 1.0001
    path = tmp_path / "quantx.pt"
    torch.jit.save(ours, str(path))
    assert torch.equal(torch.jit.load(str(path))(x), ours(x))
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-c", f"import torch; torch.jit.load({str(path)!r})"], text=True,
                         stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode != 0 and "_IMPORT_TORCHQUANTX_BEFORE_TORCH_JIT_LOAD" in res.stderr


def test_quantx_target_pairs_a_1x1_convolution_with_the_depthwise_one_after_it(tmp_path):
    """Before: 1x1 -> ReLU6 -> depthwise 3x3 (mobilenet_v2's expand and filter); after convert, one
    quantx::conv2d_pair, whose bytes are those of the two quantx::conv2d it replaced (computed here
    from the pair's own arguments). A 1x1 followed by a dense 3x3 (project, dense) stays apart."""
    torch.backends.quantized.engine = "onednn"
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.expand, self.act = nn.Conv2d(8, 48, 1), nn.ReLU6()
            self.dw, self.act2 = nn.Conv2d(48, 48, 3, stride=2, padding=1, groups=48), nn.ReLU6()
            self.project = nn.Conv2d(48, 16, 1)
            self.dense = nn.Conv2d(16, 16, 3, padding=1)

        def forward(self, x):
            y = self.project(self.act2(self.dw(self.act(self.expand(x)))))
            return self.dense(y)

    model = Block().eval()
    g = torch.Generator().manual_seed(4)
    data = [torch.randn(2, 8, 15, 15, generator=g) for _ in range(3)]
    p = tqx.prepare(model)
    assert str(p.graph).count("aten::conv2d") == 4
    tqx.calibrate(p, data, progress=False)
    ours = tqx.convert(p)
    graph = ours.graph
    pairs = [n for n in graph.nodes() if n.kind() == "quantx::conv2d_pair"]
    assert len(pairs) == 1 and str(graph).count("quantx::conv2d(") == 2, str(graph)
    text = tqx.summary(ours, file=io.StringIO())
    assert "expand + dw  quantx::conv2d (1x1) + quantx::conv2d (depthwise) -> quantx::conv2d_pair" in text, text

    def arg(v):
        node = v.node()
        return getattr(ours, node.s("name")) if node.kind() == "prim::GetAttr" else v.toIValue()

    args = [arg(v) for v in list(pairs[0].inputs())[1:]]
    # The pair's input: the model input quantized as the graph does it.
    quant = next(n for n in graph.nodes() if n.kind() == "quantx::quantize_nhwc")
    x = data[0]
    qx = torch.ops.quantx.quantize_nhwc(x, *[arg(v) for v in list(quant.inputs())[1:]])
    got = torch.ops.quantx.conv2d_pair(qx, *args)
    want = torch.ops.quantx.conv2d(torch.ops.quantx.conv2d(qx, *args[:5]), *args[5:])
    assert torch.equal(got.int_repr(), want.int_repr())
    assert sqnr(model(x), ours(x)) > 20
    path = tmp_path / "pair.pt"
    torch.jit.save(ours, str(path))
    assert torch.equal(torch.jit.load(str(path))(x), ours(x))


def test_quantx_target_fuses_relu6_exactly():
    torch.backends.quantized.engine = "onednn"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU6(), nn.Conv2d(16, 8, 1), nn.ReLU6()).eval()
    g = torch.Generator().manual_seed(2)
    # Inputs whose activations stay below 6: the observed int8 range then ends at or below 6.
    data = [torch.rand(2, 3, 12, 12, generator=g) * 0.5 for _ in range(3)]
    p = tqx.prepare(model)
    tqx.calibrate(p, data, progress=False)
    native, ours = tqx.convert(p, target="native"), tqx.convert(p, target="quantx")
    graph = str(ours.graph)
    assert "aten::hardtanh" not in graph and "aten::hardtanh" in str(native.graph)
    text = tqx.summary(ours, file=io.StringIO())
    assert "+ aten::hardtanh -> quantx::conv2d(relu)  (ReLU6 as the epilogue clamp [" in text
    x = data[0]
    assert torch.equal(ours(x), native(x))


@pytest.mark.parametrize("final", ["relu6", "linear"])
def test_quantx_relu6_fuses_as_a_clamp_when_the_range_passes_6(final):
    # The conv output is observed before ReLU6 (its range reaches about +-10), so ReLU6 must clamp
    # the integers at q(6), below 255; the fused kernel does that in its epilogue, bit-exact with
    # PyTorch's quantized hardtanh after quantized::conv2d.
    torch.backends.quantized.engine = "onednn"
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU6(), nn.Conv2d(16, 8, 1), nn.ReLU6()]
    if final == "linear":
        layers += [nn.Flatten(), nn.Linear(8 * 12 * 12, 10), nn.ReLU6()]
    model = nn.Sequential(*layers).eval()
    g = torch.Generator().manual_seed(2)
    data = [torch.randn(2, 3, 12, 12, generator=g) * 4 for _ in range(3)]
    p = tqx.prepare(model)
    tqx.calibrate(p, data, progress=False)
    native, ours = tqx.convert(p, target="native"), tqx.convert(p, target="quantx")
    assert "aten::hardtanh" not in str(ours.graph)
    text = tqx.summary(ours, file=io.StringIO())
    clamps = [int(c) for c in re.findall(r"ReLU6 as the epilogue clamp \[\d+, (\d+)\]", text)]
    assert len(clamps) == (3 if final == "linear" else 2) and min(clamps) < 255, text
    for x in data + [torch.randn(2, 3, 12, 12, generator=g) * 8]:
        assert torch.equal(ours(x), native(x)), text


def test_quantx_conv2d_rejects_a_bad_qmax():
    torch.manual_seed(0)
    packed = torch.ops.quantx.conv_prepack(torch.randint(-8, 8, (4, 3, 1, 1), dtype=torch.int8), torch.full((4,), 0.1),
                                           None, [1, 1], [0, 0], [1, 1], 1)
    qx = torch.quantize_per_tensor(torch.rand(1, 3, 4, 4), 0.01, 0, torch.quint8)
    with pytest.raises(RuntimeError, match=r"quantx::conv2d: qmax should be in \[10, 255\], got 5"):
        torch.ops.quantx.conv2d(qx, packed, 0.05, 10, True, 5)
    with pytest.raises(RuntimeError, match=r"qmax should be in \[0, 255\], got 256"):
        torch.ops.quantx.conv2d(qx, packed, 0.05, 10, False, 256)


_HELPER_METHOD_MODEL = r'''
import torch, torchquantx as tqx
from torch import nn

class M(nn.Module):  # forward calls a helper method, as torchvision's ResNet calls _forward_impl
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
    def _impl(self, x):
        return torch.relu(self.conv(x))
    def forward(self, x):
        return self._impl(x)

good, bad = torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 8)
p = tqx.prepare(M().eval())
tqx.calibrate(p, [good], progress=False)
models = {"prepared": p, "converted": tqx.convert(p), "dynamic": tqx.quantize_dynamic(M().eval()),
          "weights": tqx.quantize_weights(M().eval())}
for name, m in models.items():
    try:
        m(bad)
    except RuntimeError as e:
        assert "_impl" in str(e) and "channels" in str(e), str(e)
        print(name, "raised")
'''


def test_error_inside_an_inlined_helper_method_raises_instead_of_crashing(tmp_path):
    # The TorchScript traceback of such an error walks the inlined call stack; before canonicalize
    # inlined a copy first, that stack pointed at methods freezing had deleted and the process died.
    import subprocess
    import sys
    script = tmp_path / "helper_method.py"  # TorchScript needs the class's source in a file
    script.write_text(_HELPER_METHOD_MODEL)
    res = subprocess.run([sys.executable, str(script)], text=True, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["prepared", "raised", "converted", "raised", "dynamic", "raised", "weights", "raised"]
