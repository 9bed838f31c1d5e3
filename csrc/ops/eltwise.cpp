// quantx::mul, the table-driven activations (hardswish, hardsigmoid, sigmoid, tanh) and
// quantx::dequantize on PyTorch quint8 tensors.
#include <ATen/core/Tensor.h>
#include <ATen/ops/_empty_affine_quantized.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "kernels/eltwise.h"
#include "kernels/lut.h"
#include "kernels/quantize.h"
#include "ops/quint8.h"

namespace tqx::ops {
namespace {

// True when `small` is [N or 1, C, 1, 1] against a 4-D `shape` [N, C, H, W]: a per-channel scale
// such as a squeeze-and-excitation gate, applied per pixel without materializing the broadcast.
bool is_channel_vector(const at::Tensor& small, c10::IntArrayRef shape) {
  return shape.size() == 4 && small.dim() == 4 && small.size(1) == shape[1] && small.size(2) == 1 &&
         small.size(3) == 1 && (small.size(0) == shape[0] || small.size(0) == 1);
}

at::Tensor mul(const at::Tensor& qa, const at::Tensor& qb, double scale, int64_t zero_point, bool relu) {
  constexpr const char* op = "quantx::mul";
  check_quint8(op, "qa", qa);
  check_quint8(op, "qb", qb);
  check_scale(op, scale);
  check_zero_point(op, zero_point, 0, 255);
  const std::vector<int64_t> shape = broadcast_shape(op, qa.sizes(), qb.sizes());
  // Note [Rounding]'s requantize; the multiplier in double then float32, as quantized::mul.
  kernels::MulParams p{static_cast<float>(qa.q_scale() * qb.q_scale() / scale),
                       static_cast<int32_t>(qa.q_zero_point()), static_cast<int32_t>(qb.q_zero_point()),
                       static_cast<int32_t>(zero_point), relu ? static_cast<int32_t>(zero_point) : 0, 255};
  const auto& k = kernels::eltwise_kernels();
  const bool a_full = qa.sizes() == c10::IntArrayRef(shape), b_full = qb.sizes() == c10::IntArrayRef(shape);
  if ((a_full && !b_full && is_channel_vector(qb, shape)) || (b_full && !a_full && is_channel_vector(qa, shape))) {
    // The product is symmetric: the full operand is `x`, the per-channel one `v`.
    const at::Tensor x = (a_full ? qa : qb).contiguous(c10::MemoryFormat::ChannelsLast);
    const at::Tensor v = (a_full ? qb : qa).contiguous();
    if (!a_full) std::swap(p.a_zero_point, p.b_zero_point);
    at::Tensor y = empty_quantized(x.sizes(), x.options(), scale, zero_point,
                                               c10::MemoryFormat::ChannelsLast);
    const int64_t c = shape[1], hw = shape[2] * shape[3], pixels = shape[0] * hw;
    const uint8_t *px = u8_data(x), *pv = u8_data(v);
    uint8_t* py = u8_data_mut(y);
    const bool v_batched = v.size(0) > 1;
    parallel_chunks(pixels * c, [&](int64_t s, int64_t e) {
      // Chunks are element ranges; split them at pixel boundaries.
      for (int64_t i = s; i < e;) {
        const int64_t pix = i / c, ch = i % c, n = std::min(e - i, c - ch);
        k.u8_mul(n, px + i, pv + (v_batched ? pix / hw * c : 0) + ch, p, py + i);
        i += n;
      }
    });
    return y;
  }
  // Otherwise broadcasting as aten::mul does: the smaller operand is expanded and materialized.
  const at::Tensor ea = a_full ? qa : qa.expand(shape);
  const at::Tensor eb = b_full ? qb : qb.expand(shape);
  const auto fmt = ea.dim() == 4 && ea.is_contiguous(c10::MemoryFormat::ChannelsLast) ? c10::MemoryFormat::ChannelsLast
                                                                                       : c10::MemoryFormat::Contiguous;
  const at::Tensor a = ea.contiguous(fmt), b = eb.contiguous(fmt);
  at::Tensor y = empty_quantized(a.sizes(), a.options(), scale, zero_point, fmt);
  const uint8_t *pa = u8_data(a), *pb = u8_data(b);
  uint8_t* py = u8_data_mut(y);
  parallel_chunks(a.numel(), [&](int64_t s, int64_t e) { k.u8_mul(e - s, pa + s, pb + s, p, py + s); });
  return y;
}

// Tables are built once per (function, input qparams, output qparams) and kept: a model has a few
// dozen distinct ones, each 256 bytes.
const uint8_t* cached_table(kernels::LutFunction f, float in_scale, int32_t in_zp, float out_scale, int32_t out_zp) {
  using Key = std::tuple<int, float, int32_t, float, int32_t>;
  static std::mutex mu;
  static std::map<Key, std::array<uint8_t, 256>> tables;
  const Key key{static_cast<int>(f), in_scale, in_zp, out_scale, out_zp};
  std::lock_guard<std::mutex> lock(mu);
  auto it = tables.find(key);
  if (it == tables.end()) {
    if (tables.size() >= 4096) tables.clear();  // bounds memory for programs that sweep qparams
    it = tables.emplace(key, std::array<uint8_t, 256>{}).first;
    kernels::build_u8_lut(f, in_scale, in_zp, out_scale, out_zp, it->second.data());
  }
  return it->second.data();  // std::map nodes stay put until clear(), which only this lock holder runs
}

at::Tensor apply_table(const char* op, kernels::LutFunction f, const at::Tensor& qx, double scale,
                       int64_t zero_point) {
  check_quint8(op, "qx", qx);
  check_scale(op, scale);
  check_zero_point(op, zero_point, 0, 255);
  const auto fmt = qx.dim() == 4 && qx.is_contiguous(c10::MemoryFormat::ChannelsLast) ? c10::MemoryFormat::ChannelsLast
                                                                                       : c10::MemoryFormat::Contiguous;
  const at::Tensor x = qx.contiguous(fmt);
  at::Tensor y = empty_quantized(x.sizes(), x.options(), scale, zero_point, fmt);
  // Copied out of the cache: a later call may clear it.
  std::array<uint8_t, 256> table;
  std::copy_n(cached_table(f, static_cast<float>(x.q_scale()), static_cast<int32_t>(x.q_zero_point()),
                           static_cast<float>(scale), static_cast<int32_t>(zero_point)),
              256, table.begin());
  const auto& k = kernels::eltwise_kernels();
  const uint8_t* px = u8_data(x);
  uint8_t* py = u8_data_mut(y);
  parallel_chunks(x.numel(), [&](int64_t s, int64_t e) { k.u8_lut(e - s, px + s, table.data(), py + s); });
  return y;
}

at::Tensor hardswish(const at::Tensor& qx, double scale, int64_t zero_point) {
  return apply_table("quantx::hardswish", kernels::LutFunction::kHardswish, qx, scale, zero_point);
}
at::Tensor hardsigmoid(const at::Tensor& qx, double scale, int64_t zero_point) {
  return apply_table("quantx::hardsigmoid", kernels::LutFunction::kHardsigmoid, qx, scale, zero_point);
}
at::Tensor sigmoid(const at::Tensor& qx, double scale, int64_t zero_point) {
  return apply_table("quantx::sigmoid", kernels::LutFunction::kSigmoid, qx, scale, zero_point);
}
at::Tensor tanh(const at::Tensor& qx, double scale, int64_t zero_point) {
  return apply_table("quantx::tanh", kernels::LutFunction::kTanh, qx, scale, zero_point);
}

// quint8 -> float32 (Note [Rounding]'s dequantize), keeping a channels-last layout. Other quantized
// tensors (qint8, per channel) go to aten::dequantize: convert may place this op on any of them.
at::Tensor dequantize(const at::Tensor& qx) {
  if (qx.scalar_type() != c10::kQUInt8 || qx.qscheme() != c10::kPerTensorAffine) return qx.dequantize();
  const auto fmt = qx.dim() == 4 && qx.is_contiguous(c10::MemoryFormat::ChannelsLast) ? c10::MemoryFormat::ChannelsLast
                                                                                       : c10::MemoryFormat::Contiguous;
  const at::Tensor x = qx.contiguous(fmt);
  at::Tensor y = at::empty(x.sizes(), x.options().dtype(c10::kFloat).memory_format(fmt));
  const kernels::AffineParams p = affine(x.q_scale(), x.q_zero_point(), 0, 255);
  const auto& k = kernels::quantize_kernels();
  const uint8_t* px = u8_data(x);
  float* py = y.data_ptr<float>();
  parallel_chunks(x.numel(), [&](int64_t s, int64_t e) { k.u8_f32_dequantize(e - s, px + s, py + s, p); });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("mul(Tensor qa, Tensor qb, float output_scale, int output_zero_point, bool relu=False) -> Tensor");
  m.def("hardswish(Tensor qx, float output_scale, int output_zero_point) -> Tensor");
  m.def("hardsigmoid(Tensor qx, float output_scale, int output_zero_point) -> Tensor");
  m.def("sigmoid(Tensor qx, float output_scale, int output_zero_point) -> Tensor");
  m.def("tanh(Tensor qx, float output_scale, int output_zero_point) -> Tensor");
  m.def("dequantize(Tensor qx) -> Tensor");
}

static void register_kernels(torch::Library& m) {
  m.impl("mul", mul);
  m.impl("hardswish", hardswish);
  m.impl("hardsigmoid", hardsigmoid);
  m.impl("sigmoid", sigmoid);
  m.impl("tanh", tanh);
  m.impl("dequantize", dequantize);
}

TORCH_LIBRARY_IMPL(quantx, QuantizedCPU, m) { register_kernels(m); }

// A float tensor reaching these ops is a usage error; the same kernels report it clearly.
TORCH_LIBRARY_IMPL(quantx, CPU, m) { register_kernels(m); }

}  // namespace tqx::ops
