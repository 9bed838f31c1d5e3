// quantx::quantize_* / dequantize_* / requantize: float <-> integer tensors, per tensor or channel.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "kernels/quantize.h"
#include "ops/common.h"

namespace tqx::ops {
namespace {

using kernels::AffineParams;
using kernels::QuantizeKernels;

template <typename Q>
using QuantizeFn = void (*)(int64_t, const float*, Q*, const AffineParams&);

// Dispatches on the storage type; fn receives a typed pointer and the kernel table.
template <typename Fn>
void with_storage(c10::ScalarType st, Fn&& fn) {
  switch (st) {
    case c10::kByte: fn(static_cast<uint8_t*>(nullptr)); break;
    case c10::kChar: fn(static_cast<int8_t*>(nullptr)); break;
    case c10::kShort: fn(static_cast<int16_t*>(nullptr)); break;
    case c10::kInt: fn(static_cast<int32_t*>(nullptr)); break;
    default: TORCH_INTERNAL_ASSERT(false, "unexpected storage ", st);
  }
}

template <typename Q> struct Entry;
template <> struct Entry<uint8_t> {
  static auto quantize(const QuantizeKernels& k) { return k.f32_u8_quantize; }
  static auto dequantize(const QuantizeKernels& k) { return k.u8_f32_dequantize; }
};
template <> struct Entry<int8_t> {
  static auto quantize(const QuantizeKernels& k) { return k.f32_s8_quantize; }
  static auto dequantize(const QuantizeKernels& k) { return k.s8_f32_dequantize; }
};
template <> struct Entry<int16_t> {
  static auto quantize(const QuantizeKernels& k) { return k.f32_s16_quantize; }
  static auto dequantize(const QuantizeKernels& k) { return k.s16_f32_dequantize; }
};
template <> struct Entry<int32_t> {
  static auto quantize(const QuantizeKernels& k) { return k.f32_s32_quantize; }
  static auto dequantize(const QuantizeKernels& k) { return k.s32_f32_dequantize; }
};

at::Tensor quantize_per_tensor(const at::Tensor& input, double scale, int64_t zero_point,
                               c10::ScalarType dtype, c10::optional<int64_t> quant_min,
                               c10::optional<int64_t> quant_max) {
  constexpr const char* op = "quantx::quantize_per_tensor";
  check_float(op, "input", input);
  Storage s = storage_for(op, dtype);
  apply_range(op, s, quant_min, quant_max);
  check_scale(op, scale);
  check_zero_point(op, zero_point, s.qmin, s.qmax);
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(s.dtype));
  const AffineParams p = affine(scale, zero_point, s.qmin, s.qmax);
  const QuantizeKernels& k = kernels::quantize_kernels();
  with_storage(s.dtype, [&](auto* tag) {
    using Q = std::remove_pointer_t<decltype(tag)>;
    const float* src = x.data_ptr<float>();
    Q* dst = static_cast<Q*>(out.data_ptr());
    auto fn = Entry<Q>::quantize(k);
    parallel_chunks(x.numel(), [&](int64_t b, int64_t e) { fn(e - b, src + b, dst + b, p); });
  });
  return out;
}

at::Tensor quantize_per_channel(const at::Tensor& input, const at::Tensor& scales,
                                const at::Tensor& zero_points, int64_t axis, c10::ScalarType dtype,
                                c10::optional<int64_t> quant_min, c10::optional<int64_t> quant_max) {
  constexpr const char* op = "quantx::quantize_per_channel";
  check_float(op, "input", input);
  Storage s = storage_for(op, dtype);
  apply_range(op, s, quant_min, quant_max);
  axis = check_axis(op, input, axis);
  const at::Tensor x = input.contiguous();
  const ChannelView v = channel_view(x, axis);
  at::Tensor sc, zp;
  check_channel_qparams(op, scales, zero_points, v.channels, s.qmin, s.qmax, &sc, &zp);
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(s.dtype));
  const QuantizeKernels& k = kernels::quantize_kernels();
  const float* sp = sc.data_ptr<float>();
  const int64_t* zpp = zp.data_ptr<int64_t>();
  with_storage(s.dtype, [&](auto* tag) {
    using Q = std::remove_pointer_t<decltype(tag)>;
    const float* src = x.data_ptr<float>();
    Q* dst = static_cast<Q*>(out.data_ptr());
    auto fn = Entry<Q>::quantize(k);
    parallel_rows(v, [&](int64_t o, int64_t c) {
      const int64_t off = (o * v.channels + c) * v.inner;
      fn(v.inner, src + off, dst + off, affine(sp[c], zpp[c], s.qmin, s.qmax));
    });
  });
  return out;
}

at::Tensor dequantize_per_tensor(const at::Tensor& input, double scale, int64_t zero_point) {
  constexpr const char* op = "quantx::dequantize_per_tensor";
  check_cpu(op, "input", input);
  const Storage s = storage_of_tensor(op, "input", input);
  check_scale(op, scale);
  check_zero_point(op, zero_point, s.qmin, s.qmax);
  const at::Tensor q = input.contiguous();
  at::Tensor out = at::empty(q.sizes(), q.options().dtype(c10::kFloat));
  const AffineParams p = affine(scale, zero_point, s.qmin, s.qmax);
  const QuantizeKernels& k = kernels::quantize_kernels();
  with_storage(s.dtype, [&](auto* tag) {
    using Q = std::remove_pointer_t<decltype(tag)>;
    const Q* src = static_cast<const Q*>(q.data_ptr());
    float* dst = out.data_ptr<float>();
    auto fn = Entry<Q>::dequantize(k);
    parallel_chunks(q.numel(), [&](int64_t b, int64_t e) { fn(e - b, src + b, dst + b, p); });
  });
  return out;
}

at::Tensor dequantize_per_channel(const at::Tensor& input, const at::Tensor& scales,
                                  const at::Tensor& zero_points, int64_t axis) {
  constexpr const char* op = "quantx::dequantize_per_channel";
  check_cpu(op, "input", input);
  const Storage s = storage_of_tensor(op, "input", input);
  axis = check_axis(op, input, axis);
  const at::Tensor q = input.contiguous();
  const ChannelView v = channel_view(q, axis);
  at::Tensor sc, zp;
  check_channel_qparams(op, scales, zero_points, v.channels, s.qmin, s.qmax, &sc, &zp);
  at::Tensor out = at::empty(q.sizes(), q.options().dtype(c10::kFloat));
  const QuantizeKernels& k = kernels::quantize_kernels();
  const float* sp = sc.data_ptr<float>();
  const int64_t* zpp = zp.data_ptr<int64_t>();
  with_storage(s.dtype, [&](auto* tag) {
    using Q = std::remove_pointer_t<decltype(tag)>;
    const Q* src = static_cast<const Q*>(q.data_ptr());
    float* dst = out.data_ptr<float>();
    auto fn = Entry<Q>::dequantize(k);
    parallel_rows(v, [&](int64_t o, int64_t c) {
      const int64_t off = (o * v.channels + c) * v.inner;
      fn(v.inner, src + off, dst + off, affine(sp[c], zpp[c], s.qmin, s.qmax));
    });
  });
  return out;
}

at::Tensor requantize(const at::Tensor& input, double multiplier, int64_t zero_point,
                      c10::ScalarType dtype, c10::optional<int64_t> quant_min,
                      c10::optional<int64_t> quant_max) {
  constexpr const char* op = "quantx::requantize";
  check_cpu(op, "input", input);
  TORCH_CHECK(input.scalar_type() == c10::kInt, op,
              ": input should be an int32 accumulator tensor, got ", dtype_name(input.scalar_type()));
  Storage s = storage_for(op, dtype);
  TORCH_CHECK(s.dtype == c10::kByte || s.dtype == c10::kChar, op,
              ": dtype should be an 8-bit type (torch.uint8/quint8 or torch.int8/qint8), got ", dtype_name(dtype));
  apply_range(op, s, quant_min, quant_max);
  TORCH_CHECK(std::isfinite(multiplier) && multiplier > 0.0 && static_cast<float>(multiplier) > 0.0f, op,
              ": multiplier should be a finite float32 > 0, got ", multiplier);
  check_zero_point(op, zero_point, s.qmin, s.qmax);
  const at::Tensor acc = input.contiguous();
  at::Tensor out = at::empty(acc.sizes(), acc.options().dtype(s.dtype));
  const AffineParams p = kernels::make_requant_params(static_cast<float>(multiplier),
                                                      static_cast<int32_t>(zero_point),
                                                      static_cast<int32_t>(s.qmin),
                                                      static_cast<int32_t>(s.qmax));
  const QuantizeKernels& k = kernels::quantize_kernels();
  const int32_t* src = acc.data_ptr<int32_t>();
  if (s.dtype == c10::kByte) {
    uint8_t* dst = out.data_ptr<uint8_t>();
    parallel_chunks(acc.numel(), [&](int64_t b, int64_t e) { k.s32_u8_requantize(e - b, src + b, dst + b, p); });
  } else {
    int8_t* dst = out.data_ptr<int8_t>();
    parallel_chunks(acc.numel(), [&](int64_t b, int64_t e) { k.s32_s8_requantize(e - b, src + b, dst + b, p); });
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("quantize_per_tensor(Tensor input, float scale, int zero_point, ScalarType dtype, "
        "int? quant_min=None, int? quant_max=None) -> Tensor");
  m.def("quantize_per_channel(Tensor input, Tensor scales, Tensor zero_points, int axis, "
        "ScalarType dtype, int? quant_min=None, int? quant_max=None) -> Tensor");
  m.def("dequantize_per_tensor(Tensor input, float scale, int zero_point) -> Tensor");
  m.def("dequantize_per_channel(Tensor input, Tensor scales, Tensor zero_points, int axis) -> Tensor");
  m.def("requantize(Tensor input, float multiplier, int zero_point, ScalarType dtype, "
        "int? quant_min=None, int? quant_max=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(quantx, CPU, m) {
  m.impl("quantize_per_tensor", quantize_per_tensor);
  m.impl("quantize_per_channel", quantize_per_channel);
  m.impl("dequantize_per_tensor", dequantize_per_tensor);
  m.impl("dequantize_per_channel", dequantize_per_channel);
  m.impl("requantize", requantize);
}

}  // namespace tqx::ops
