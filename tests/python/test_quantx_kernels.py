"""torchquantx's own int8 operators (target "quantx") against PyTorch's quantized operators."""
import pytest
import torch

import torchquantx  # noqa: F401


def native_input(qx: torch.Tensor) -> torch.Tensor:
    """qx where PyTorch's onednn kernels compute exactly. On x86 CPUs without VNNI they add pairs of
    uint8 x int8 products in saturating int16 (torchquantx.native_int8_saturates), so there the
    activations are clipped to 7 bits (products pair-summed to at most 127 * 128 * 2 < 32768);
    our kernels are compared with the exact scalar reference at full range in the C++ tests."""
    if not torchquantx.native_int8_saturates():
        return qx
    return torch._make_per_tensor_quantized_tensor(qx.int_repr().clamp(max=127), qx.q_scale(), qx.q_zero_point())


def quantized_weight(cout, cin, k, per_channel=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(cout, cin, k, k, generator=g) * 0.2 if k else torch.randn(cout, cin, generator=g) * 0.2
    dims = tuple(range(1, w.dim()))
    scales = w.abs().amax(dim=dims) / 127.5
    return torch.quantize_per_channel(w, scales.double(), torch.zeros(cout, dtype=torch.long), 0, torch.qint8)


@pytest.mark.parametrize("cin,cout,k,stride,pad,dil,groups", [
    (8, 16, 3, 1, 1, 1, 1), (8, 8, 3, 2, 1, 1, 8), (16, 32, 1, 1, 0, 1, 1), (6, 12, 5, 2, 2, 2, 3),
    (3, 4, 7, 2, 3, 1, 1)])
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_equals_onednn(cin, cout, k, stride, pad, dil, groups, relu):
    torch.backends.quantized.engine = "onednn"
    g = torch.Generator().manual_seed(1)
    qx = native_input(torch.quantize_per_tensor(torch.randn(2, cin, 13, 11, generator=g), 0.03, 120, torch.quint8))
    qw = quantized_weight(cout, cin // groups, k)
    bias = torch.randn(cout, generator=g)
    ours_packed = torch.ops.quantx.conv_prepack(qw.int_repr(), qw.q_per_channel_scales().float(), bias,
                                                [stride] * 2, [pad] * 2, [dil] * 2, groups)
    ours = torch.ops.quantx.conv2d(qx, ours_packed, 0.05, 100, relu)
    theirs_packed = torch.ops.quantized.conv2d_prepack(qw, bias, [stride] * 2, [pad] * 2, [dil] * 2, groups)
    theirs = (torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d)(qx, theirs_packed, 0.05, 100)
    diff = (ours.int_repr().int() - theirs.int_repr().int()).abs()
    assert ours.shape == theirs.shape and ours.q_scale() == 0.05 and ours.q_zero_point() == 100
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 0.01


def test_linear_and_add_equal_onednn():
    torch.backends.quantized.engine = "onednn"
    qw = quantized_weight(10, 32, 0)
    qx = native_input(torch.quantize_per_tensor(torch.randn(4, 3, 32), 0.02, 128, torch.quint8))
    ours = torch.ops.quantx.linear(qx, torch.ops.quantx.linear_prepack(qw.int_repr(), qw.q_per_channel_scales().float(),
                                                                       None), 0.1, 128, False)
    theirs = torch.ops.quantized.linear(qx, torch.ops.quantized.linear_prepack(qw, None), 0.1, 128)
    assert ours.shape == (4, 3, 10)
    assert int((ours.int_repr().int() - theirs.int_repr().int()).abs().max()) <= 1
    qa = torch.quantize_per_tensor(torch.randn(2, 8, 5, 5), 0.05, 110, torch.quint8)
    qb = torch.quantize_per_tensor(torch.randn(2, 8, 5, 5), 0.07, 140, torch.quint8)
    for relu in (False, True):
        ours = torch.ops.quantx.add(qa, qb, 0.1, 90, relu)
        theirs = (torch.ops.quantized.add_relu if relu else torch.ops.quantized.add)(qa, qb, 0.1, 90)
        assert int((ours.int_repr().int() - theirs.int_repr().int()).abs().max()) <= 1


@pytest.mark.parametrize("shape_a,shape_b", [((2, 3, 4, 4), (1, 3, 4, 4)), ((5, 3, 7, 7), (3, 1, 7)),
                                             ((1, 6), (4, 1))])
def test_add_broadcasts_like_quantized_add(shape_a, shape_b):
    g = torch.Generator().manual_seed(4)
    qa = torch.quantize_per_tensor(torch.randn(*shape_a, generator=g), 0.05, 110, torch.quint8)
    qb = torch.quantize_per_tensor(torch.randn(*shape_b, generator=g), 0.07, 140, torch.quint8)
    ours = torch.ops.quantx.add(qa, qb, 0.1, 90, False)
    theirs = torch.ops.quantized.add(qa, qb, 0.1, 90)
    assert ours.shape == theirs.shape == torch.broadcast_shapes(shape_a, shape_b)
    assert int((ours.int_repr().int() - theirs.int_repr().int()).abs().max()) <= 1
    with pytest.raises(RuntimeError, match=r"quantx::add: qa and qb should have broadcastable shapes, got \[2, 3\] and \[4\]"):
        torch.ops.quantx.add(torch.quantize_per_tensor(torch.randn(2, 3), 0.1, 0, torch.quint8),
                             torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.quint8), 0.1, 0, False)


def test_packed_weights_save_and_bad_input_errors(tmp_path):
    qw = quantized_weight(4, 3, 3)
    packed = torch.ops.quantx.conv_prepack(qw.int_repr(), qw.q_per_channel_scales().float(), None, [1, 1], [1, 1],
                                           [1, 1], 1)
    with pytest.raises(RuntimeError, match="quantx::conv2d: qx should be a per-tensor quint8 quantized tensor"):
        torch.ops.quantx.conv2d(torch.randn(1, 3, 5, 5), packed, 0.1, 0)
    with pytest.raises(RuntimeError, match="quantx::conv_prepack: groups should divide the 4 output channels, got 3"):
        torch.ops.quantx.conv_prepack(qw.int_repr(), qw.q_per_channel_scales().float(), None, [1, 1], [1, 1],
                                      [1, 1], 3)
    with pytest.raises(RuntimeError, match="quantx::conv_prepack: weight should be a 2-D .* torch.int8 tensor"):
        torch.ops.quantx.conv_prepack(qw.dequantize(), qw.q_per_channel_scales().float(), None, [1, 1], [1, 1],
                                      [1, 1], 1)
    qx = torch.quantize_per_tensor(torch.randn(1, 3, 5, 5), 0.1, 128, torch.quint8)
    with pytest.raises(RuntimeError, match="quantx::conv2d: scale should be a finite number > 0, got -1"):
        torch.ops.quantx.conv2d(qx, packed, -1.0, 0)


def _reference_conv_add(qx, qw, bias, stride, pad, qres, scale, zp, relu):
    """One rounding of conv(x) + residual, in float64 from the integer representations."""
    x = qx.int_repr().double() - qx.q_zero_point()
    acc = torch.nn.functional.conv2d(x, qw.int_repr().double(), None, stride, pad)
    ws = qw.q_per_channel_scales().float()
    mult = (torch.tensor(qx.q_scale(), dtype=torch.float32) * ws * torch.tensor(1 / scale, dtype=torch.float32))
    v = acc * mult.double().view(1, -1, 1, 1) + (bias.float() * torch.tensor(1 / scale, dtype=torch.float32)).double().view(1, -1, 1, 1)
    v = v + (qres.int_repr().double() - qres.q_zero_point()) * (qres.q_scale() / scale)
    q = torch.round(v) + zp
    return q.clamp(zp if relu else 0, 255)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("cin,cout,k,stride", [(16, 32, 3, 1), (64, 64, 1, 1), (8, 24, 3, 2)])
def test_conv2d_add_is_one_rounding_of_conv_plus_residual(cin, cout, k, stride, relu):
    g = torch.Generator().manual_seed(3)
    qx = torch.quantize_per_tensor(torch.randn(2, cin, 9, 9, generator=g), 0.03, 120, torch.quint8)
    qw = quantized_weight(cout, cin, k)
    bias = torch.randn(cout, generator=g)
    pad = k // 2
    o = (9 + 2 * pad - k) // stride + 1
    qres = torch.quantize_per_tensor(torch.randn(2, cout, o, o, generator=g), 0.04, 130, torch.quint8)
    packed = torch.ops.quantx.conv_prepack(qw.int_repr(), qw.q_per_channel_scales().float(), bias, [stride] * 2,
                                           [pad] * 2, [1, 1], 1)
    ours = torch.ops.quantx.conv2d_add(qx, packed, qres, 0.05, 100, relu)
    ref = _reference_conv_add(qx, qw, bias, stride, pad, qres, 0.05, 100, relu)
    diff = (ours.int_repr().double() - ref).abs()
    # float32 epilogue vs float64 reference: ties may round apart, never more than 1 LSB.
    assert ours.q_scale() == 0.05 and ours.q_zero_point() == 100
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 0.01
    with pytest.raises(RuntimeError, match="quantx::conv2d_add: qres should have the convolution's output shape"):
        torch.ops.quantx.conv2d_add(qx, packed, qres[:, :, :1], 0.05, 100, relu)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cin,mid,hw,k,stride,batch", [(16, 96, 30, 3, 2, 1), (24, 40, 17, 3, 1, 3), (8, 32, 13, 5, 2, 2)])
def test_conv2d_pair_is_the_two_convolutions_in_turn(cin, mid, hw, k, stride, batch, threads):
    """quantx::conv2d_pair (a 1x1 convolution and a depthwise one over bands of rows, Note [Conv
    pairs]) gives the bytes of quantx::conv2d twice, for any thread count."""
    g = torch.Generator().manual_seed(cin + mid)
    qx = torch.quantize_per_tensor(torch.rand(batch, cin, hw, hw, generator=g) * 2, 0.01, 3, torch.quint8)
    w1, w2 = quantized_weight(mid, cin, 1, seed=1), quantized_weight(mid, 1, k, seed=2)
    first = torch.ops.quantx.conv_prepack(w1.int_repr(), w1.q_per_channel_scales().float(), torch.randn(mid, generator=g),
                                          [1, 1], [0, 0], [1, 1], 1)
    second = torch.ops.quantx.conv_prepack(w2.int_repr(), w2.q_per_channel_scales().float(),
                                           torch.randn(mid, generator=g), [stride] * 2, [k // 2] * 2, [1, 1], mid)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        mid_q = torch.ops.quantx.conv2d(qx, first, 0.05, 10, True, 130)
        want = torch.ops.quantx.conv2d(mid_q, second, 0.1, 7, True, 200)
        got = torch.ops.quantx.conv2d_pair(qx, first, 0.05, 10, True, 130, second, 0.1, 7, True, 200)
    finally:
        torch.set_num_threads(before)
    assert got.q_scale() == 0.1 and got.q_zero_point() == 7 and got.shape == want.shape
    assert torch.equal(got.int_repr(), want.int_repr())
    with pytest.raises(RuntimeError, match=r"quantx::conv2d_pair: first should be a pointwise convolution \(kernel "
                                           r"1x1, stride 1, no padding, one group\), got kernel " + str(k)):
        torch.ops.quantx.conv2d_pair(mid_q, second, 0.05, 10, True, 130, second, 0.1, 7, True, 200)
    with pytest.raises(RuntimeError, match=f"quantx::conv2d_pair: qx has {cin + 1} channels, the first convolution "
                                           f"expects {cin}"):
        torch.ops.quantx.conv2d_pair(torch.cat([qx, qx[:, :1]], 1), first, 0.05, 10, True, 130, second, 0.1, 7)
    with pytest.raises(RuntimeError, match="quantx::conv2d_pair: qmax should be in \\[10, 255\\], got 5"):
        torch.ops.quantx.conv2d_pair(qx, first, 0.05, 10, True, 5, second, 0.1, 7)


def test_packed_layer_called_with_other_scales_gives_a_fresh_layers_bytes():
    """A packed layer keeps the epilogue of its last scales (ops/conv.cpp, PackedConv::requant): a
    layer shared by call sites with other scales, or a residual at one site only, must still give
    what a freshly packed layer gives for each call, in any order."""
    g = torch.Generator().manual_seed(5)
    qw = quantized_weight(24, 16, 3)
    bias = torch.randn(24, generator=g)

    def pack():
        return torch.ops.quantx.conv_prepack(qw.int_repr(), qw.q_per_channel_scales().float(), bias, [1, 1], [1, 1],
                                             [1, 1], 1)

    shared = pack()
    x = torch.randn(1, 16, 9, 9, generator=g)
    qres = torch.quantize_per_tensor(torch.randn(1, 24, 9, 9, generator=g), 0.04, 130, torch.quint8)
    calls = [(0.03, 0.05, None), (0.03, 0.5, None), (0.02, 0.05, None), (0.03, 0.05, qres), (0.03, 0.05, None),
             (0.03, 0.05, qres), (0.03, 0.05, None)]
    for x_scale, y_scale, res in calls + calls[::-1]:
        qx = torch.quantize_per_tensor(x, x_scale, 120, torch.quint8)
        if res is None:
            got, want = (torch.ops.quantx.conv2d(qx, p, y_scale, 100, False) for p in (shared, pack()))
        else:
            got, want = (torch.ops.quantx.conv2d_add(qx, p, res, y_scale, 100, False) for p in (shared, pack()))
        assert torch.equal(got.int_repr(), want.int_repr()), (x_scale, y_scale, res is not None)


def test_quantize_nhwc_equals_torch_and_is_channels_last():
    x = torch.randn(2, 3, 17, 19) * 3
    ours = torch.ops.quantx.quantize_nhwc(x, 0.02, 128)
    theirs = torch.quantize_per_tensor(x, 0.02, 128, torch.quint8)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(ours.int_repr(), theirs.int_repr()) and ours.q_scale() == 0.02
    flat = torch.ops.quantx.quantize_nhwc(x.view(6, -1), 0.02, 128)
    assert torch.equal(flat.int_repr(), theirs.int_repr().view(6, -1))
    with pytest.raises(RuntimeError, match="quantx::quantize_nhwc: zero_point"):
        torch.ops.quantx.quantize_nhwc(x, 0.02, 300)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(3, 5, 120, 130),  # NCHW, pixel chunks across images (quantized per plane)
        lambda: torch.randn(2, 4, 9, 11).contiguous(memory_format=torch.channels_last),  # already NHWC
        lambda: torch.randn(2, 1, 9, 11),  # one channel: both layouts at once
        lambda: torch.randn(2, 9, 11, 6).permute(0, 3, 1, 2),  # a strided view
        lambda: torch.randn(1, 70, 5, 7),  # more channels than the kernel's block
    ],
)
def test_quantize_nhwc_any_input_layout_gives_torchs_bytes(make):
    x = make() * 3
    theirs = torch.quantize_per_tensor(x, 0.02, 128, torch.quint8)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ours = torch.ops.quantx.quantize_nhwc(x, 0.02, 128)
            assert ours.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(ours.int_repr(), theirs.int_repr())
    finally:
        torch.set_num_threads(before)


LEVELS = ["scalar", "avx2", "avx_vnni", "avx512", "avx512_vnni", "amx"]


@pytest.mark.parametrize("cin,cout,k,groups", [(64, 64, 3, 1), (3, 16, 7, 1), (32, 32, 3, 32), (20, 50, 1, 1)])
def test_conv_kernels_agree_on_every_isa_level(cin, cout, k, groups):
    """Every GEMM / depthwise kernel this CPU has gives the bytes of the scalar reference."""
    g = torch.Generator().manual_seed(4)
    qx = torch.quantize_per_tensor(torch.randn(1, cin, 15, 13, generator=g), 0.03, 120, torch.quint8)
    qw = quantized_weight(cout, cin // groups, k)
    packed = torch.ops.quantx.conv_prepack(qw.int_repr(), qw.q_per_channel_scales().float(), None, [1, 1],
                                           [k // 2] * 2, [1, 1], groups)
    outs = {}
    try:
        for level in LEVELS:
            if not torchquantx._C.isa_supported(level):
                continue
            torchquantx.set_max_isa(level)
            outs[level] = torch.ops.quantx.conv2d(qx, packed, 0.05, 100, False).int_repr()
    finally:
        torchquantx.reset_max_isa()
    assert "scalar" in outs and len(outs) >= 2, outs.keys()
    for level, out in outs.items():
        assert torch.equal(out, outs["scalar"]), level


def test_conv_result_does_not_depend_on_the_thread_count():
    g = torch.Generator().manual_seed(5)
    qx = torch.quantize_per_tensor(torch.randn(3, 32, 21, 17, generator=g), 0.03, 120, torch.quint8)
    qw = quantized_weight(48, 32, 3)
    packed = torch.ops.quantx.conv_prepack(qw.int_repr(), qw.q_per_channel_scales().float(), None, [1, 1], [1, 1],
                                           [1, 1], 1)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(torch.ops.quantx.conv2d(qx, packed, 0.05, 100, True).int_repr())
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])
