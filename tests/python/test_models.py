"""Whole-model coverage of graph-mode PTQ: torchvision models, control flow, float-only ops,
portability of the saved int8 file, its size, and numerics against PyTorch FX.

Weights are random (no downloads). BatchNorm layers get realistic statistics first: momentum None
(cumulative average) over 4 random batches in train mode, then eval(). Inputs are 2x3x64x64.

About the SQNR thresholds: random-init networks are not trained classifiers, and for deep mobile
networks (depthwise convs, SE blocks) their int8 logits sit only a few dB above the noise. That is
the model, not the pipeline: with the same observers, PyTorch FX gives the same numbers bit for bit
(mobilenet_v2, mobilenet_v3_large, mnasnet0_5, resnet18: 0 LSB apart, see test_matches_fx_*). The
thresholds are the measured values (torch 1.13, onednn engine, seeds below) minus a margin, so a
regression in any op's lowering shows while run-to-run noise (none: everything is seeded) does not.
"""
from __future__ import annotations

import copy
import io
import math
import os
import re
import subprocess
import sys
import textwrap
from typing import Dict, List, Tuple

import pytest
import torch
from torch import nn

import torchquantx as tqx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from custom_models import (ControlFlowNet, LoopListCatNet, PreluGeluLnSoftmaxNet,  # noqa: E402
                           set_bn_stats)

torchvision = pytest.importorskip("torchvision")

SIZE = 64
BATCH = 2


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def random_batches(n: int, seed: int, shift=None) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g)
        if shift is not None:
            x = x + shift(i)
        out.append(x)
    return out


def logits(out):
    """Scripted GoogLeNet returns GoogLeNetOutputs(logits, aux2, aux1); eager eval returns logits."""
    if isinstance(out, torch.Tensor):
        return out
    return out[0]


def sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    noise = (ref.double() - out.double()).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(ref.double().pow(2).sum().item() / noise)


def summary_text(q) -> str:
    return tqx.summary(q, file=io.StringIO())


def int8_kernels(text: str) -> int:
    return sum(1 for line in text.splitlines() if "-> quantized::" in line or "-> quantx::" in line)


def float_lines(text: str) -> List[str]:
    return [line for line in text.splitlines() if "-> float" in line and "int8-rounded weights" not in line]


def float_kinds(text: str) -> Dict[str, int]:
    kinds: Dict[str, int] = {}
    for line in float_lines(text):
        op = line.split()[1]
        kinds[op] = kinds.get(op, 0) + 1
    return kinds


def build_torchvision(name: str) -> nn.Module:
    torch.manual_seed(0)
    kwargs = {}
    if name in ("googlenet", "inception_v3"):
        kwargs = dict(transform_input=False, aux_logits=False, init_weights=True)
    model = torchvision.models.__dict__[name](weights=None, **kwargs)
    return set_bn_stats(model, random_batches(4, seed=1))


_MODELS: Dict[str, nn.Module] = {}


def float_model(name: str) -> nn.Module:
    """Each torchvision model is built (and given BN statistics) once per test session."""
    if name not in _MODELS:
        _MODELS[name] = build_torchvision(name)
    return _MODELS[name]


def quantize(model: nn.Module, qconfig: str = "x86", calib=None, target: str = "native", **kw):
    """prepare -> calibrate -> convert; target "native" by default here: the tables below and the
    FX comparisons were measured with PyTorch's quantized:: kernels (test_quantx_default_* covers
    the default target)."""
    prepared = tqx.prepare(model, qconfig, **kw)
    tqx.calibrate(prepared, calib if calib is not None else random_batches(4, seed=2), progress=False)
    return prepared, tqx.convert(prepared, target)


# ---------------------------------------------------------------------------------------------
# torchvision models
# ---------------------------------------------------------------------------------------------
# (name, min SQNR dB with qconfig x86 (the default), min SQNR dB with onednn, min int8 kernels,
# summary fragments that must appear, the float ops expected in the summary). Measured
# (2x3x64x64; BN seed 1, calibration seed 2, held-out seed 3; torch 1.13, onednn engine):
#   model               x86 SQNR  onednn SQNR  int8 kernels  float ops
#   resnet18              18.35     21.56          29            0
#   resnet50               4.91      5.69          70            0
#   mobilenet_v2           3.26      5.17          63            0
#   mobilenet_v3_large     6.93      9.14         103            0   (hardswish, SE: hardsigmoid * x)
#   mobilenet_v3_small     7.27     10.59          88            0
#   shufflenet_v2_x0_5     5.94      7.85          73            0   (chunk, transpose, cat)
#   squeezenet1_1         33.08     36.15          34            0
#   googlenet              6.77      8.67          67            0
#   efficientnet_b0        1.83      7.35         107           51   (49 SiLU: not in the op registry)
#   regnet_y_400mf         6.25      9.03         118            0
#   mnasnet0_5             5.22      8.72          63            0
#   convnext_tiny         20.57     26.04          95           47   (LayerNorm, GELU, their permutes)
# Low values are the random-init models (FX gives the same, see the module docstring); x86's
# 7-bit activations (reduce_range) cost 1-5 dB on these. Thresholds: about 25 % (>= 1 dB) below
# the measured SQNR; kernels: the measured count (the plan is deterministic; more is fine).
SILU_HEAD = {"aten::silu": 49, "aten::adaptive_avg_pool2d": 1, "aten::flatten": 1}
CONVNEXT = {"aten::layer_norm": 23, "aten::gelu": 18, "aten::permute": 5, "aten::flatten": 1}
MODELS = [
    ("resnet18", 16.0, 19.0, 29, ["quantized::conv2d_relu", "quantized::add_relu", "quantized::linear"], {}),
    ("resnet50", 3.5, 4.2, 70, ["quantized::conv2d_relu", "quantized::add_relu"], {}),
    ("mobilenet_v2", 2.3, 4.0, 63, ["quantized::conv2d", "quantized::add", "quantized::linear"], {}),
    ("mobilenet_v3_large", 5.0, 7.5, 103, ["quantized::hardswish", "quantized::mul", "aten::hardsigmoid -> int8"], {}),
    ("mobilenet_v3_small", 5.5, 8.5, 88, ["quantized::hardswish", "quantized::mul"], {}),
    ("shufflenet_v2_x0_5", 4.5, 6.0, 73, ["quantized::cat", "aten::transpose -> int8"], {}),
    ("squeezenet1_1", 30.0, 33.0, 34, ["quantized::cat", "quantized::conv2d_relu"], {}),
    ("googlenet", 5.0, 6.5, 67, ["quantized::cat", "aten::max_pool2d -> int8"], {}),
    ("efficientnet_b0", 1.0, 5.5, 107, ["quantized::mul", "aten::sigmoid -> int8"], SILU_HEAD),
    ("regnet_y_400mf", 4.5, 7.0, 118, ["quantized::add_relu", "quantized::mul"], {}),
    ("mnasnet0_5", 4.0, 6.5, 63, ["quantized::add", "quantized::linear"], {}),
    ("convnext_tiny", 17.0, 22.0, 95, ["quantized::linear", "quantized::add"], CONVNEXT),
]


@pytest.mark.parametrize("name,min_x86,min_onednn,min_kernels,must_have,floats", MODELS, ids=[m[0] for m in MODELS])
def test_torchvision_model(name, min_x86, min_onednn, min_kernels, must_have, floats):
    model = float_model(name)
    x = random_batches(1, seed=3)[0]
    with torch.no_grad():
        ref = logits(model(x))
    for qconfig, min_sqnr in (("x86", min_x86), ("onednn", min_onednn)):
        if qconfig == "onednn" and tqx.native_int8_saturates():
            # PyTorch's kernels clip 8-bit activations' sums on this CPU, and convert says so; the
            # quantization itself is judged on its exact simulation (target "reference").
            with pytest.warns(UserWarning, match="saturating int16"):
                prepared, q = quantize(model, qconfig)
            judged = tqx.convert(prepared, "reference")
        else:
            _, q = quantize(model, qconfig)
            judged = q
        with torch.no_grad():
            out = logits(judged(x))
        assert out.shape == ref.shape
        assert torch.isfinite(out).all()
        got = sqnr(ref, out)
        assert got > min_sqnr, f"{name} {qconfig}: SQNR {got:.2f} dB <= {min_sqnr} dB"
        text = summary_text(q)
        assert int8_kernels(text) >= min_kernels, text
        for needle in must_have:
            assert needle in text, f"{name}: {needle!r} not in the summary:\n{text}"
        # Only ops without an int8 lowering (and ops whose inputs they leave float) stay float.
        assert float_kinds(text) == floats, text


def test_densenet121():
    model = float_model("densenet121")
    x = random_batches(1, seed=3)[0]
    _, q = quantize(model)
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert out.shape == ref.shape
    assert sqnr(ref, out) > 3.0


# ---------------------------------------------------------------------------------------------
# Custom models: control flow FX cannot trace; ops outside the op registry
# ---------------------------------------------------------------------------------------------
def signed(i: int) -> float:
    """Alternating input offsets, so both branches of `if x.sum() > 0` see calibration data."""
    return 0.5 if i % 2 == 0 else -0.5


def control_flow_model() -> nn.Module:
    torch.manual_seed(0)
    return set_bn_stats(ControlFlowNet(), random_batches(4, seed=1, shift=signed))


def test_control_flow_model_fx_cannot_trace_it():
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(ControlFlowNet())


def test_control_flow_model():
    model = control_flow_model()
    _, q = quantize(model, calib=random_batches(4, seed=2, shift=signed))
    text = summary_text(q)
    # Both branches and the loop body run int8 kernels.
    assert "positive.0  aten::conv2d + aten::relu -> quantized::conv2d_relu" in text
    assert "negative.0  aten::conv2d -> quantized::conv2d" in text
    assert "negative.2  aten::hardswish -> quantized::hardswish" in text
    assert "refine.0  aten::conv2d + aten::relu -> quantized::conv2d_relu" in text
    assert int8_kernels(text) >= 13
    # The branch condition computes on the float input: reported as float.
    assert {"aten::sum", "aten::gt"} <= set(float_kinds(text))
    # Measured SQNR: 39.0 dB positive branch, 34.6 dB negative (seed 3, 2x3x64x64).
    for sign in (1.0, -1.0):
        x = random_batches(1, seed=3)[0] + 0.5 * sign
        with torch.no_grad():
            ref, out = model(x), q(x)
        assert (x.sum() > 0) == (sign > 0)
        assert out.shape == ref.shape and torch.isfinite(out).all()
        assert sqnr(ref, out) > 30


def test_control_flow_branch_without_calibration_data_is_named():
    # Calibration never takes the `negative` branch: convert warns, naming its layers, keeps that
    # branch in float and quantizes the rest.
    model = control_flow_model()
    prepared = tqx.prepare(model)
    tqx.calibrate(prepared, random_batches(2, seed=2, shift=lambda i: 0.5), progress=False)
    with pytest.warns(UserWarning, match=r"(?s)no calibration batch entered.*negative\.0  aten::conv2d"):
        q = tqx.convert(prepared)
    text = summary_text(q)
    assert "negative.0  aten::conv2d -> float (its branch never ran during calibration)" in text, text
    assert int8_kernels(text) > 0, text




def loop_list_cat(start_with_first: bool):
    torch.manual_seed(0)
    model = set_bn_stats(LoopListCatNet(start_with_first), random_batches(4, seed=1))
    _, q = quantize(model)
    x = random_batches(1, seed=3)[0]
    with torch.no_grad():
        return model(x), q(x)


def test_loop_appending_to_an_empty_list():
    ref, out = loop_list_cat(start_with_first=False)
    assert out.shape == ref.shape and sqnr(ref, out) > 20


def test_loop_appending_to_a_list():
    ref, out = loop_list_cat(start_with_first=True)
    assert out.shape == ref.shape, f"int8 output {tuple(out.shape)}, float {tuple(ref.shape)}"
    assert sqnr(ref, out) > 20


class ConvViewNet(nn.Module):
    """The classic `x.view(x.size(0), -1)` straight after a conv (LeNet-style heads)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.fc = nn.Linear(8 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        return self.fc(y.view(y.size(0), -1))


# quantized::conv2d and quantx::conv2d return channels-last tensors, which view(N, -1) cannot
# flatten (PyTorch FX's converted models fail there); on int8 tensors view is lowered to reshape.
@pytest.mark.parametrize("target", ["native", "quantx"])
def test_view_after_conv(target):
    torch.manual_seed(0)
    model = ConvViewNet().eval()
    prepared, _ = quantize(model)
    q = tqx.convert(prepared, target)
    x = random_batches(1, seed=3)[0]
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert sqnr(ref, out) > 20


class AttentionNet(nn.Module):
    """nn.MultiheadAttention between two linear layers (every ViT / nn.Transformer* block has one)."""

    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.fc_in = nn.Linear(16, 32)
        self.mha = nn.MultiheadAttention(32, 4, batch_first=batch_first)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc_in(x)
        y, _ = self.mha(y, y, y, need_weights=False)
        return self.fc(y)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention(batch_first):
    # Parts of nn.MultiheadAttention never run for any input (with frozen weights the fused fast
    # path always runs; self-attention takes the packed projection): their observers see no data,
    # those branches stay float, and the rest converts.
    torch.manual_seed(0)
    model = AttentionNet(batch_first).eval()
    g = torch.Generator().manual_seed(2)
    _, q = quantize(model, calib=[torch.randn(2, 5, 16, generator=g) for _ in range(4)])
    x = torch.randn(2, 5, 16, generator=g)
    with torch.no_grad():
        assert sqnr(model(x), q(x)) > 20
    text = summary_text(q)
    assert "its branch never ran during calibration" in text, text
    assert int8_kernels(text) >= 2, text  # fc_in and fc
    if batch_first:  # the fused fast path, two outputs, is reported as float too
        assert "aten::_native_multi_head_attention -> float" in text, text


def test_unreached_branch_does_not_hide_missing_calibration():
    # Observers at the top level that saw nothing still fail convert, even when branch observers exist.
    prepared = tqx.prepare(AttentionNet().eval())
    with pytest.raises(RuntimeError, match="observers saw no data"):
        tqx.convert(prepared)


def test_prelu_gelu_layernorm_softmax_stay_float():
    torch.manual_seed(0)
    model = set_bn_stats(PreluGeluLnSoftmaxNet(), random_batches(4, seed=1))
    _, q = quantize(model)
    text = summary_text(q)
    kinds = float_kinds(text)
    for op in ("aten::prelu", "aten::gelu", "aten::layer_norm", "aten::softmax"):
        assert kinds.get(op) == 1, f"{op} should be reported as float once:\n{text}"
    for line in float_lines(text):
        if line.split()[1] in ("aten::prelu", "aten::gelu", "aten::layer_norm", "aten::softmax"):
            assert "not in the op registry" in line
    for needle in ("conv1  aten::conv2d -> quantized::conv2d", "conv2  aten::conv2d -> quantized::conv2d",
                   "attn  aten::conv2d -> quantized::conv2d", "aten::mul -> quantized::mul",
                   "conv3  aten::conv2d + aten::relu -> quantized::conv2d_relu", "fc  aten::linear -> quantized::linear"):
        assert needle in text, text
    x = random_batches(1, seed=3)[0]
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert sqnr(ref, out) > 25  # measured 28.4 dB


# ---------------------------------------------------------------------------------------------
# Saved files: bit-identical reload, loading without torchquantx, size
# ---------------------------------------------------------------------------------------------
def test_save_load_round_trip_is_bit_identical(tmp_path):
    model = float_model("resnet18")
    _, q = quantize(model)
    path = tmp_path / "resnet18_int8.pt"
    torch.jit.save(q, str(path))
    loaded = torch.jit.load(str(path))
    for x in random_batches(2, seed=3):
        with torch.no_grad():
            assert torch.equal(q(x), loaded(x))


_CHILD = textwrap.dedent("""
    import sys
    import torch
    # This process never imports torchquantx (no PYTHONPATH to the source tree, cwd elsewhere) and
    # never loads its operator library: the file must need stock PyTorch only.
    torch.backends.quantized.engine = "onednn"
    for name in sys.argv[1:]:
        model = torch.jit.load(name + ".pt")
        x = torch.load(name + "_input.pt")
        with torch.no_grad():
            torch.save(model(x), name + "_output.pt")
    assert "torchquantx" not in sys.modules
    try:
        torch.ops.quantx.prepare
        raise AssertionError("torch.ops.quantx is registered in the child")
    except (AttributeError, RuntimeError):
        pass
    print("ok")
""")


def test_loads_and_runs_in_a_process_without_torchquantx(tmp_path):
    cases = {"resnet18": (float_model("resnet18"), None),
             "control_flow": (control_flow_model(), signed)}
    expected = {}
    for name, (model, shift) in cases.items():
        _, q = quantize(model, calib=random_batches(4, seed=2, shift=shift))
        x = random_batches(1, seed=3, shift=shift)[0]
        torch.jit.save(q, str(tmp_path / f"{name}.pt"))
        torch.save(x, str(tmp_path / f"{name}_input.pt"))
        with torch.no_grad():
            expected[name] = q(x)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_PRELOAD")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, *cases], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
    for name in cases:
        got = torch.load(str(tmp_path / f"{name}_output.pt"))
        assert torch.equal(got, expected[name]), name


def saved_bytes(module) -> int:
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getbuffer().nbytes


def test_resnet18_int8_file_is_at_most_027x_fp32():
    model = float_model("resnet18")
    _, q = quantize(model)
    ratio = saved_bytes(q) / saved_bytes(torch.jit.script(model))
    assert ratio <= 0.27, f"int8/fp32 size {ratio:.3f}"  # measured 0.252


# ---------------------------------------------------------------------------------------------
# Numerics against PyTorch FX with the same observers, on the onednn engine
# ---------------------------------------------------------------------------------------------
class SmallResNet(nn.Module):
    """conv-bn-relu, a residual add + relu, max pooling, global pooling and a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)) + x)
        x = self.pool(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def fx_quantize(model: nn.Module, calib: List[torch.Tensor]):
    from torch.ao.quantization import (MinMaxObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping,
                                       get_default_qconfig_mapping)
    from torch.ao.quantization.observer import FixedQParamsObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    try:
        from torch.ao.quantization.backend_config import get_onednn_backend_config as backend
    except ImportError:  # torch 1.13 has none; its default (native) config is what onednn runs
        from torch.ao.quantization.backend_config import get_native_backend_config as backend
    qconfig = QConfig(activation=MinMaxObserver.with_args(reduce_range=tqx.native_int8_saturates()),
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                                qscheme=torch.per_channel_symmetric))
    mapping = QConfigMapping().set_global(qconfig)
    # FX insists on fixed-qparams observers for sigmoid/hardsigmoid/tanh/softmax: keep the default
    # ones (the same fixed qparams, 1/256 and 0, as our registry's).
    for op, qc in get_default_qconfig_mapping("onednn").object_type_qconfigs.items():
        if isinstance(qc.activation(), FixedQParamsObserver):
            mapping.set_object_type(op, qc)
    prepared = prepare_fx(copy.deepcopy(model), mapping, (calib[0],), backend_config=backend())
    with torch.no_grad():
        for x in calib:
            prepared(x)
    return convert_fx(prepared)


def fx_output_scale(gm) -> float:
    """Scale of the quantized tensor the FX model dequantizes into its output."""
    node = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    while True:
        if node.op == "call_method" and node.target == "dequantize":
            node = node.args[0]
        elif node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if hasattr(mod, "scale"):
                return float(mod.scale)
            node = node.args[0]
        elif node.op == "call_function":
            for a in node.args:
                if isinstance(a, torch.fx.Node) and a.op == "get_attr" and "scale" in a.target:
                    return float(getattr(gm, a.target))
            node = node.args[0]
        else:
            raise AssertionError(f"cannot find the output scale at {node.format_node()}")


def our_output_scale(text: str) -> float:
    scales = re.findall(r"out\(scale=([0-9.e+-]+), zero_point=", text)
    return float(scales[-1])


@pytest.fixture
def onednn_engine():
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "onednn"
    yield
    torch.backends.quantized.engine = previous


def compare_with_fx(model: nn.Module, calib: List[torch.Tensor], held_out: torch.Tensor) -> Tuple[float, float, float]:
    """(max |ours - fx| in output LSBs, our SQNR, FX SQNR) with MinMax observers on both sides;
    7-bit activations on both sides where PyTorch's kernels would saturate 8-bit ones
    (tqx.native_int8_saturates: the two graphs would clip different sums)."""
    _, ours = quantize(model, "onednn", calib=calib, observer="minmax", reduce_range=tqx.native_int8_saturates())
    theirs = fx_quantize(model, calib)
    with torch.no_grad():
        ref, a, b = model(held_out), ours(held_out), theirs(held_out)
    scale = fx_output_scale(theirs)
    assert our_output_scale(summary_text(ours)) == pytest.approx(scale, rel=1e-5), "output qparams differ from FX's"
    return (a - b).abs().max().item() / scale, sqnr(ref, a), sqnr(ref, b)


def small_resnet() -> nn.Module:
    torch.manual_seed(0)
    return set_bn_stats(SmallResNet(), random_batches(4, seed=1))


# Measured max |ours - FX| (onednn engine, MinMax observers, 4 calibration batches of 2x3x64x64):
#   small_resnet 0 LSB, resnet18 0 LSB, mobilenet_v2 0 LSB, mobilenet_v3_large 0 LSB, mnasnet0_5 0 LSB:
#   bit-identical (same BN folding to the last bit, same per-channel weight qparams, same
#   activation qparams, the same quantized:: kernels); regnet_y_400mf 1 LSB; squeezenet1_1 1 LSB
#   (a cat's inputs share its observer, as in FX, so the Fire modules' expand convs write the
#   cat's qparams directly).
# A difference of one step computes as 1.000007 after dequantizing in float32: compared rounded.
@pytest.mark.parametrize("name", ["small_resnet", "resnet18", "mobilenet_v2", "mobilenet_v3_large", "mnasnet0_5",
                                  "regnet_y_400mf", "squeezenet1_1"])
def test_matches_fx_within_one_lsb(name, onednn_engine):
    model = small_resnet() if name == "small_resnet" else float_model(name)
    lsb, ours, theirs = compare_with_fx(model, random_batches(4, seed=2), random_batches(1, seed=3)[0])
    # With 7-bit activations (CPUs without VNNI, see compare_with_fx) squeezenet1_1 measured 2.00
    # output steps apart on a Zen 3 (1 step on VNNI CPUs at 8 bits): there the bar is 2.
    bar = 2.0 if tqx.native_int8_saturates() else 1.0
    assert round(lsb, 3) <= bar, f"{name}: ours and FX differ by {lsb:.2f} output LSB (SQNR ours {ours:.2f}, FX {theirs:.2f})"
    if name in ("small_resnet", "resnet18"):
        assert lsb == 0.0, f"{name}: measured bit-identical to FX, now {lsb:.2f} LSB apart"


# The default target (torchquantx's kernels) against PyTorch's quantized:: kernels, from one
# calibration. Each quantx op is within 1 LSB of its quantized:: counterpart (the kernel and op
# tests check that); through a whole network those single-step differences (conv+add rounded once
# instead of twice, ReLU6 as the kernel's clamp) propagate, so here the bar is accuracy: the
# quantx model is as close to fp32 as the native one. Measured (x86 preset, random weights,
# 2x3x64x64; SQNR dB quantx / native, max difference): resnet18 18.98 / 18.35, 6 LSB;
# mobilenet_v2 4.04 / 3.26, 27; mobilenet_v3_large 7.27 / 6.93, 22; shufflenet 5.64 / 5.64, 0;
# googlenet 6.91 / 6.77, 6; densenet121 10.85 / 10.87, 10; efficientnet_b0 3.09 / 1.83, 11;
# regnet_y_400mf 7.12 / 6.25, 36.
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v2_x1_0",
                                  "googlenet", "densenet121", "efficientnet_b0", "regnet_y_400mf"])
def test_quantx_default_matches_native(name):
    model = float_model(name)
    prepared, native = quantize(model)
    ours = tqx.convert(prepared)
    text = summary_text(ours)
    assert text.startswith("target=quantx") and "-> quantx::conv2d" in text, text
    x = random_batches(1, seed=3)[0]
    with torch.no_grad():
        ref, a, b = (out[0] if isinstance(out, tuple) else out for out in (model(x), ours(x), native(x)))
    lsb = (a - b).abs().max().item() / our_output_scale(text)
    print(f"{name}: SQNR quantx {sqnr(ref, a):.2f} native {sqnr(ref, b):.2f}, max difference {lsb:.0f} LSB")
    # PyTorch's oneDNN kernels take another code path on x86 CPUs without VNNI; on a Zen 3 its
    # mobilenet_v3_large measured 8.00 dB against quantx 7.45 (VNNI CPUs: 6.93 / 7.27): 1 dB there.
    margin = 1.0 if tqx.native_int8_saturates() else 0.5
    assert sqnr(ref, a) >= sqnr(ref, b) - margin, f"{name}: quantx {sqnr(ref, a):.2f} dB vs native {sqnr(ref, b):.2f} dB"
