"""A numpy evaluator for the ONNX operators torchquantx.export_onnx emits (tests: onnx 1.12 has no onnx.reference).

There is no onnxruntime here either.

Float operators run in float64 and round their result to float32 once, so they are as exact as a
float32 kernel can be; QuantizeLinear follows the ONNX spec (x / scale in float32, round half to
even, saturate), DequantizeLinear computes (q - zero_point) * scale in float32.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
from onnx import helper, numpy_helper

Op = Callable[[List[Optional[np.ndarray]], Dict[str, Any]], List[np.ndarray]]
_OPS: Dict[str, Op] = {}


def _op(*names: str) -> Callable[[Op], Op]:
    def register(fn: Op) -> Op:
        for name in names:
            _OPS[name] = fn
        return fn
    return register


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _per_axis(param: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if param.ndim == 0:
        return param
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return param.reshape(shape)


@_op("QuantizeLinear")
def _quantize(inputs, attrs):
    x, scale = _f32(inputs[0]), _f32(inputs[1])
    zp = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.zeros((), np.uint8)
    axis = attrs.get("axis", 1)
    info = np.iinfo(zp.dtype)
    q = np.rint(x / _per_axis(scale, x.ndim, axis)) + _per_axis(zp.astype(np.float32), x.ndim, axis)
    return [np.clip(q, info.min, info.max).astype(zp.dtype)]


@_op("DequantizeLinear")
def _dequantize(inputs, attrs):
    q, scale = inputs[0], _f32(inputs[1])
    zp = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.zeros((), q.dtype)
    axis = attrs.get("axis", 1)
    centred = q.astype(np.int32) - _per_axis(zp.astype(np.int32), q.ndim, axis)
    return [centred.astype(np.float32) * _per_axis(scale, q.ndim, axis)]


def _pads(attrs: Dict[str, Any], spatial: int) -> List[int]:
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("onnx_eval: auto_pad")
    return list(attrs.get("pads", [0] * (2 * spatial)))


def _windows(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
             out_hw: Sequence[int]):
    """(i, j, x[:, :, window tap (i, j) for every output pixel]) for a padded NCHW x."""
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r0, c0 = i * dilations[0], j * dilations[1]
            yield i, j, x[:, :, r0:r0 + strides[0] * (out_hw[0] - 1) + 1:strides[0],
                          c0:c0 + strides[1] * (out_hw[1] - 1) + 1:strides[1]]


@_op("Conv")
def _conv(inputs, attrs):
    x, w = inputs[0].astype(np.float64), inputs[1].astype(np.float64)
    if x.ndim != 4:
        raise NotImplementedError(f"onnx_eval: Conv on {x.ndim}-d input")
    groups = attrs.get("group", 1)
    strides = attrs.get("strides", [1, 1])
    dilations = attrs.get("dilations", [1, 1])
    t, l, b, r = _pads(attrs, 2)
    x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    kh, kw = w.shape[2:]
    oh = (x.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (x.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    n, c = x.shape[:2]
    oc, cg = w.shape[0], c // groups
    ocg = oc // groups
    out = np.zeros((n, oc, oh, ow))
    xg = x.reshape(n, groups, cg, *x.shape[2:])
    wg = w.reshape(groups, ocg, cg, kh, kw)
    for i, j, tap in _windows(xg.reshape(n, groups * cg, *x.shape[2:]), (kh, kw), strides, dilations, (oh, ow)):
        tap = tap.reshape(n, groups, cg, oh, ow)
        out += np.einsum("ngchw,goc->ngohw", tap, wg[:, :, :, i, j]).reshape(n, oc, oh, ow)
    if len(inputs) > 2 and inputs[2] is not None:
        out += inputs[2].astype(np.float64).reshape(1, -1, 1, 1)
    return [_f32(out)]


@_op("Gemm")
def _gemm(inputs, attrs):
    a, b = inputs[0].astype(np.float64), inputs[1].astype(np.float64)
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + attrs.get("beta", 1.0) * inputs[2].astype(np.float64)
    return [_f32(y)]


@_op("MatMul")
def _matmul(inputs, attrs):
    return [_f32(inputs[0].astype(np.float64) @ inputs[1].astype(np.float64))]


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Op:
    def op(inputs, attrs):
        a, b = inputs
        if np.issubdtype(a.dtype, np.floating):
            return [_f32(fn(a.astype(np.float64), b.astype(np.float64)))]
        return [fn(a, b).astype(a.dtype)]
    return op


_op("Add")(_binary(np.add))
_op("Sub")(_binary(np.subtract))
_op("Mul")(_binary(np.multiply))
_op("Div")(_binary(lambda a, b: a / b if np.issubdtype(a.dtype, np.floating) else a // b))


@_op("Relu")
def _relu(inputs, attrs):
    return [np.maximum(inputs[0], 0).astype(inputs[0].dtype)]


@_op("Clip")
def _clip(inputs, attrs):
    x = inputs[0]
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return [x.astype(inputs[0].dtype)]


@_op("Sigmoid")
def _sigmoid(inputs, attrs):
    return [_f32(1.0 / (1.0 + np.exp(-inputs[0].astype(np.float64))))]


@_op("HardSigmoid")
def _hardsigmoid(inputs, attrs):
    x = inputs[0].astype(np.float64)
    return [_f32(np.clip(attrs.get("alpha", 0.2) * x + attrs.get("beta", 0.5), 0.0, 1.0))]


@_op("HardSwish")
def _hardswish(inputs, attrs):
    x = inputs[0].astype(np.float64)
    return [_f32(x * np.clip(x / 6.0 + 0.5, 0.0, 1.0))]


def _pool(inputs, attrs, reduce: str):
    x = inputs[0].astype(np.float64)
    kernel = attrs["kernel_shape"]
    strides = attrs.get("strides", [1, 1])
    dilations = attrs.get("dilations", [1, 1])
    t, l, b, r = _pads(attrs, 2)
    h, w = x.shape[2:]
    size = [h + t + b, w + l + r]
    out_hw = []
    for d in range(2):
        span = size[d] - dilations[d] * (kernel[d] - 1) - 1
        n = (-(-span // strides[d]) if attrs.get("ceil_mode", 0) else span // strides[d]) + 1
        if attrs.get("ceil_mode", 0) and (n - 1) * strides[d] >= size[d] - (b if d == 0 else r):
            n -= 1  # the last window must start inside the input or the left padding
        out_hw.append(n)
    extra = [max(0, (out_hw[d] - 1) * strides[d] + dilations[d] * (kernel[d] - 1) + 1 - size[d]) for d in range(2)]
    fill = -np.inf if reduce == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (t, b + extra[0]), (l, r + extra[1])), constant_values=fill)
    ones = np.pad(np.ones((1, 1, h, w)), ((0, 0), (0, 0), (t, b + extra[0]), (l, r + extra[1])))
    inside = np.pad(np.ones((1, 1, h + t + b, w + l + r)), ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    acc = np.full((x.shape[0], x.shape[1], *out_hw), fill)
    count = np.zeros((1, 1, *out_hw))
    taps = zip(_windows(xp, kernel, strides, dilations, out_hw), _windows(ones, kernel, strides, dilations, out_hw),
               _windows(inside, kernel, strides, dilations, out_hw))
    for (_, _, tap), (_, _, real), (_, _, padded) in taps:
        if reduce == "max":
            acc = np.maximum(acc, tap)
        else:
            acc = acc + tap
            count = count + (padded if attrs.get("count_include_pad", 0) else real)
    return [_f32(acc if reduce == "max" else acc / count)]


_op("MaxPool")(lambda inputs, attrs: _pool(inputs, attrs, "max"))
_op("AveragePool")(lambda inputs, attrs: _pool(inputs, attrs, "avg"))


@_op("GlobalAveragePool")
def _global_average_pool(inputs, attrs):
    x = inputs[0].astype(np.float64)
    return [_f32(x.mean(axis=tuple(range(2, x.ndim)), keepdims=True))]


@_op("ReduceMean")
def _reduce_mean(inputs, attrs):
    x = inputs[0].astype(np.float64)
    axes = attrs.get("axes")
    return [_f32(x.mean(axis=tuple(axes) if axes is not None else None, keepdims=bool(attrs.get("keepdims", 1))))]


@_op("Flatten")
def _flatten(inputs, attrs):
    x = inputs[0]
    axis = attrs.get("axis", 1) % max(x.ndim, 1)
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


@_op("Reshape")
def _reshape(inputs, attrs):
    x, shape = inputs[0], [int(s) for s in inputs[1]]
    shape = [x.shape[i] if s == 0 and not attrs.get("allowzero", 0) else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


@_op("Transpose")
def _transpose(inputs, attrs):
    return [np.transpose(inputs[0], attrs.get("perm"))]


@_op("Identity")
def _identity(inputs, attrs):
    return [inputs[0]]


@_op("Shape")
def _shape(inputs, attrs):
    return [np.array(inputs[0].shape, dtype=np.int64)]


@_op("Gather")
def _gather(inputs, attrs):
    return [np.take(inputs[0], inputs[1], axis=attrs.get("axis", 0))]


@_op("Unsqueeze")
def _unsqueeze(inputs, attrs):
    x = inputs[0]
    axes = sorted(int(a) % (x.ndim + len(inputs[1])) for a in inputs[1])
    for a in axes:
        x = np.expand_dims(x, a)
    return [x]


@_op("Slice")
def _slice(inputs, attrs):
    x, starts, ends = inputs[:3]
    axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else range(len(starts))
    steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis)] = slice(int(start), int(end), int(step))
    return [x[tuple(index)]]


@_op("Concat")
def _concat(inputs, attrs):
    return [np.concatenate(inputs, axis=attrs["axis"])]


@_op("Cast")
def _cast(inputs, attrs):
    from onnx import mapping
    return [inputs[0].astype(mapping.TENSOR_TYPE_TO_NP_TYPE[attrs["to"]])]


@_op("Constant")
def _constant(inputs, attrs):
    return [numpy_helper.to_array(attrs["value"]) if not isinstance(attrs["value"], np.ndarray) else attrs["value"]]


@_op("ReduceSum")
def _reduce_sum(inputs, attrs):
    x = inputs[0].astype(np.float64)
    axes = tuple(int(a) for a in inputs[1]) if len(inputs) > 1 and inputs[1] is not None else None
    return [_f32(x.sum(axis=axes, keepdims=bool(attrs.get("keepdims", 1))))]


@_op("Greater")
def _greater(inputs, attrs):
    return [np.greater(inputs[0], inputs[1])]


def _run_graph(graph: Any, values: Dict[str, np.ndarray]) -> List[np.ndarray]:
    values = dict(values)  # a subgraph sees the enclosing scope; its own names stay inside
    values.update({t.name: numpy_helper.to_array(t) for t in graph.initializer})
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        inputs = [values[name] if name else None for name in node.input]
        if node.op_type == "If":
            outputs = _run_graph(attrs["then_branch" if bool(inputs[0]) else "else_branch"], values)
        elif node.op_type in _OPS:
            outputs = _OPS[node.op_type](inputs, attrs)
        else:
            raise NotImplementedError(f"onnx_eval: operator {node.op_type} is not implemented")
        values.update(zip(node.output, outputs))
    return [values[o.name] for o in graph.output]


def run(model: Any, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """The graph outputs of an ONNX ModelProto for the named input arrays."""
    return _run_graph(model.graph, feeds)
