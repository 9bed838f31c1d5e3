// quantx::max_pool2d / avg_pool2d / adaptive_avg_pool2d / mean over H, W on PyTorch quint8 tensors
// (NHWC inside; the aten ops' arguments and output sizes).
#include <ATen/core/Tensor.h>
#include <ATen/ops/_empty_affine_quantized.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/quantize_per_tensor.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "kernels/pool.h"
#include "ops/quint8.h"

namespace tqx::ops {
namespace {

// An int[2] argument given as one or two values (an empty stride means "the kernel size").
std::array<int64_t, 2> pair_arg(const char* op, const char* arg, c10::IntArrayRef v, c10::IntArrayRef fallback) {
  if (v.empty()) v = fallback;
  TORCH_CHECK(v.size() == 1 || v.size() == 2, op, ": ", arg, " should have 1 or 2 values, got ", v);
  return {v[0], v.size() == 2 ? v[1] : v[0]};
}

// ATen's pooling_output_shape (ceil_mode drops a last window that starts in the right padding).
int64_t pooled_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dilation, bool ceil_mode) {
  const int64_t num = in + 2 * pad - dilation * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

struct Geometry {
  kernels::Pool2dShape s;
  at::Tensor x;  // channels-last input
};

Geometry pool_geometry(const char* op, const at::Tensor& qx, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                       c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
  check_quint8(op, "qx", qx);
  TORCH_CHECK(qx.dim() == 4, op, ": qx should be a 4-D [N, C, H, W] tensor, got shape ", qx.sizes());
  const auto k = pair_arg(op, "kernel_size", kernel_size, {});
  const auto st = pair_arg(op, "stride", stride, kernel_size);
  const auto pad = pair_arg(op, "padding", padding, {});
  const auto dil = pair_arg(op, "dilation", dilation, {});
  TORCH_CHECK(k[0] > 0 && k[1] > 0 && st[0] > 0 && st[1] > 0 && dil[0] > 0 && dil[1] > 0, op,
              ": kernel_size, stride and dilation should be > 0, got kernel_size ", kernel_size, ", stride ", stride,
              ", dilation ", dilation);
  TORCH_CHECK(pad[0] >= 0 && pad[1] >= 0 && pad[0] <= k[0] / 2 && pad[1] <= k[1] / 2, op,
              ": padding should be >= 0 and at most half the kernel size, got padding ", padding, " for kernel_size ",
              kernel_size);
  Geometry g;
  g.x = qx.contiguous(c10::MemoryFormat::ChannelsLast);
  const int64_t oh = pooled_size(qx.size(2), k[0], pad[0], st[0], dil[0], ceil_mode);
  const int64_t ow = pooled_size(qx.size(3), k[1], pad[1], st[1], dil[1], ceil_mode);
  TORCH_CHECK(oh > 0 && ow > 0, op, ": the output would be empty (", oh, "x", ow, ") for input shape ", qx.sizes(),
              ", kernel_size ", kernel_size, ", stride ", stride, ", padding ", padding);
  g.s = {qx.size(0), qx.size(2), qx.size(3), qx.size(1), oh, ow, k[0], k[1], st[0], st[1], pad[0], pad[1], dil[0],
         dil[1]};
  return g;
}

at::Tensor empty_nhwc(const kernels::Pool2dShape& s, const at::Tensor& like, double scale, int64_t zp) {
  return empty_quantized({s.batch, s.channels, s.out_h, s.out_w}, like.options(), scale, zp,
                                     c10::MemoryFormat::ChannelsLast);
}

// Splits output pixels over the intra-op pool; each pixel is computed the same way by any thread.
template <typename Fn>
void for_pixels(const kernels::Pool2dShape& s, int64_t taps, const Fn& fn) {
  const int64_t pixels = s.batch * s.out_h * s.out_w;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, s.channels * taps));
  if (pixels > 0 && s.channels > 0) at::parallel_for(0, pixels, grain, fn);
}

at::Tensor max_pool2d(const at::Tensor& qx, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                      c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
  const Geometry g = pool_geometry("quantx::max_pool2d", qx, kernel_size, stride, padding, dilation, ceil_mode);
  at::Tensor y = empty_nhwc(g.s, g.x, g.x.q_scale(), g.x.q_zero_point());
  const uint8_t* px = u8_data(g.x);
  uint8_t* py = u8_data_mut(y);
  const kernels::Isa isa = kernels::active_isa();
  for_pixels(g.s, g.s.kernel_h * g.s.kernel_w, [&](int64_t b, int64_t e) {
    kernels::max_pool2d_u8_nhwc(g.s, px, py, b, e, isa);
  });
  return y;
}

// Output qparams are the input's (the op keeps them, as PyTorch's quantized pooling does).
kernels::AvgPoolParams same_qparams(const at::Tensor& x, bool count_include_pad, int64_t divisor_override) {
  const float scale = static_cast<float>(x.q_scale());
  const auto zp = static_cast<int32_t>(x.q_zero_point());
  return {scale, scale, zp, zp, count_include_pad, divisor_override};
}

at::Tensor avg_pool2d(const at::Tensor& qx, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                      c10::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                      c10::optional<int64_t> divisor_override) {
  constexpr const char* op = "quantx::avg_pool2d";
  const Geometry g = pool_geometry(op, qx, kernel_size, stride, padding, {1, 1}, ceil_mode);
  TORCH_CHECK(!divisor_override || *divisor_override != 0, op, ": divisor_override should not be 0");
  const kernels::AvgPoolParams p = same_qparams(g.x, count_include_pad, divisor_override.value_or(0));
  at::Tensor y = empty_nhwc(g.s, g.x, g.x.q_scale(), g.x.q_zero_point());
  const uint8_t* px = u8_data(g.x);
  uint8_t* py = u8_data_mut(y);
  const kernels::Isa isa = kernels::active_isa();
  for_pixels(g.s, g.s.kernel_h * g.s.kernel_w, [&](int64_t b, int64_t e) {
    kernels::avg_pool2d_u8_nhwc(g.s, p, px, py, b, e, isa);
  });
  return y;
}

at::Tensor adaptive_avg_pool2d_impl(const char* op, const at::Tensor& qx, int64_t out_h, int64_t out_w) {
  check_quint8(op, "qx", qx);
  TORCH_CHECK(qx.dim() == 4, op, ": qx should be a 4-D [N, C, H, W] tensor, got shape ", qx.sizes());
  TORCH_CHECK(out_h > 0 && out_w > 0, op, ": output_size should be > 0, got [", out_h, ", ", out_w, "]");
  TORCH_CHECK(qx.size(2) > 0 && qx.size(3) > 0, op, ": qx should have non-empty H and W, got shape ", qx.sizes());
  const at::Tensor x = qx.contiguous(c10::MemoryFormat::ChannelsLast);
  const kernels::Pool2dShape s{x.size(0), x.size(2), x.size(3), x.size(1), out_h, out_w, 0, 0, 0, 0, 0, 0, 0, 0};
  const kernels::AvgPoolParams p = same_qparams(x, true, 0);
  at::Tensor y = empty_nhwc(s, x, x.q_scale(), x.q_zero_point());
  const uint8_t* px = u8_data(x);
  uint8_t* py = u8_data_mut(y);
  const kernels::Isa isa = kernels::active_isa();
  const int64_t taps = (s.in_h / out_h + 1) * (s.in_w / out_w + 1);
  for_pixels(s, taps, [&](int64_t b, int64_t e) { kernels::adaptive_avg_pool2d_u8_nhwc(s, p, px, py, b, e, isa); });
  return y;
}

at::Tensor adaptive_avg_pool2d(const at::Tensor& qx, c10::IntArrayRef output_size) {
  constexpr const char* op = "quantx::adaptive_avg_pool2d";
  TORCH_CHECK(output_size.size() == 1 || output_size.size() == 2, op,
              ": output_size should have 1 or 2 values, got ", output_size);
  return adaptive_avg_pool2d_impl(op, qx, output_size[0], output_size.size() == 2 ? output_size[1] : output_size[0]);
}

// Mean over H and W of a 4-D tensor runs our adaptive pool to 1x1 (Note [Average pooling]; within
// 1 LSB of PyTorch's, which averages in float). Other reductions do what PyTorch's quantized mean
// does: dequantize, average in float, quantize with the input's qparams.
at::Tensor mean(const at::Tensor& qx, at::OptionalIntArrayRef dim, bool keepdim, c10::optional<c10::ScalarType> dtype) {
  constexpr const char* op = "quantx::mean";
  check_quint8(op, "qx", qx);
  bool spatial = qx.dim() == 4 && dim.has_value() && dim->size() == 2 && !dtype.has_value();
  if (spatial) {
    std::vector<int64_t> d(dim->begin(), dim->end());
    for (auto& v : d) v = v < 0 ? v + 4 : v;
    std::sort(d.begin(), d.end());
    spatial = d[0] == 2 && d[1] == 3;
  }
  if (!spatial) {
    return at::quantize_per_tensor(at::mean(qx.dequantize(), dim, keepdim, dtype), qx.q_scale(), qx.q_zero_point(),
                                   qx.scalar_type());
  }
  at::Tensor y = adaptive_avg_pool2d_impl(op, qx, 1, 1);
  return keepdim ? y : y.reshape({qx.size(0), qx.size(1)});
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("max_pool2d(Tensor qx, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, "
        "bool ceil_mode=False) -> Tensor");
  m.def("avg_pool2d(Tensor qx, int[2] kernel_size, int[2] stride=[], int[2] padding=0, bool ceil_mode=False, "
        "bool count_include_pad=True, int? divisor_override=None) -> Tensor");
  m.def("adaptive_avg_pool2d(Tensor qx, int[2] output_size) -> Tensor");
  m.def("mean(Tensor qx, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor");
}

static void register_kernels(torch::Library& m) {
  m.impl("max_pool2d", max_pool2d);
  m.impl("avg_pool2d", avg_pool2d);
  m.impl("adaptive_avg_pool2d", adaptive_avg_pool2d);
  m.impl("mean", mean);
}

TORCH_LIBRARY_IMPL(quantx, QuantizedCPU, m) { register_kernels(m); }

// A float tensor reaching these ops is a usage error; the same kernels report it clearly.
TORCH_LIBRARY_IMPL(quantx, CPU, m) { register_kernels(m); }

}  // namespace tqx::ops
