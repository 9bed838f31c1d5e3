// quantx::cat (requantizing inputs whose qparams differ from the output's) and
// quantx::upsample_nearest2d on PyTorch quint8 tensors.
#include <ATen/core/Tensor.h>
#include <ATen/ops/_empty_affine_quantized.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "kernels/copy.h"
#include "kernels/lut.h"
#include "ops/quint8.h"

namespace tqx::ops {
namespace {

// Dimensions in memory order for a layout: N, H, W, C for channels-last 4-D tensors.
std::vector<int64_t> memory_order(int64_t dim, bool channels_last) {
  if (channels_last) return {0, 2, 3, 1};
  std::vector<int64_t> order(dim);
  for (int64_t i = 0; i < dim; ++i) order[i] = i;
  return order;
}

at::Tensor cat(const at::TensorList qxs, int64_t dim, double scale, int64_t zero_point) {
  constexpr const char* op = "quantx::cat";
  TORCH_CHECK(!qxs.empty(), op, ": qxs should hold at least one tensor, got an empty list");
  check_scale(op, scale);
  check_zero_point(op, zero_point, 0, 255);
  const at::Tensor& first = qxs[0];
  for (const at::Tensor& t : qxs) check_quint8(op, "qxs", t);
  const int64_t nd = first.dim();
  TORCH_CHECK(nd > 0, op, ": qxs should hold tensors with at least one dimension, got a 0-d tensor");
  TORCH_CHECK(dim >= -nd && dim < nd, op, ": dim should be in [", -nd, ", ", nd - 1, "], got ", dim);
  if (dim < 0) dim += nd;
  std::vector<int64_t> out_shape(first.sizes().begin(), first.sizes().end());
  out_shape[dim] = 0;
  for (const at::Tensor& t : qxs) {
    TORCH_CHECK(t.dim() == nd, op, ": qxs should all have ", nd, " dimensions, got shapes ", first.sizes(), " and ",
                t.sizes());
    for (int64_t d = 0; d < nd; ++d) {
      TORCH_CHECK(d == dim || t.size(d) == first.size(d), op, ": qxs should match in every dimension but ", dim,
                  ", got shapes ", first.sizes(), " and ", t.sizes());
    }
    out_shape[dim] += t.size(dim);
  }
  const bool cl = nd == 4 && first.is_contiguous(c10::MemoryFormat::ChannelsLast);
  const auto fmt = cl ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
  at::Tensor y = empty_quantized(out_shape, first.options(), scale, zero_point, fmt);
  // Rows: the dimensions before `dim` in memory order; each input adds its block of the rest.
  const std::vector<int64_t> order = memory_order(nd, cl);
  const int64_t pos = std::find(order.begin(), order.end(), dim) - order.begin();
  int64_t outer = 1;
  for (int64_t j = 0; j < pos; ++j) outer *= out_shape[order[j]];
  const size_t n = qxs.size();
  std::vector<at::Tensor> xs(n);
  std::vector<const uint8_t*> ptrs(n), tables(n, nullptr);
  std::vector<int64_t> inner(n, 1);
  std::vector<std::array<uint8_t, 256>> storage(n);
  for (size_t i = 0; i < n; ++i) {
    xs[i] = qxs[i].contiguous(fmt);
    ptrs[i] = u8_data(xs[i]);
    for (int64_t j = pos; j < nd; ++j) inner[i] *= xs[i].size(order[j]);
    // Equal qparams copy bytes; others map through a requantize table (Note [Rounding] twice).
    const float in_scale = static_cast<float>(xs[i].q_scale()), out_scale = static_cast<float>(scale);
    if (in_scale != out_scale || xs[i].q_zero_point() != zero_point) {
      kernels::build_u8_lut(kernels::LutFunction::kRequantize, in_scale, static_cast<int32_t>(xs[i].q_zero_point()),
                            out_scale, static_cast<int32_t>(zero_point), storage[i].data());
      tables[i] = storage[i].data();
    }
  }
  int64_t row = 0;
  for (int64_t v : inner) row += v;
  if (outer == 0 || row == 0) return y;
  uint8_t* py = u8_data_mut(y);
  const kernels::Isa isa = kernels::active_isa();
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / row);
  at::parallel_for(0, outer, grain, [&](int64_t b, int64_t e) {
    kernels::u8_cat_rows(static_cast<int64_t>(n), ptrs.data(), inner.data(), tables.data(), py, b, e, isa);
  });
  return y;
}

// PyTorch's nearest_idx: identity and 2x are exact, otherwise floor(dst * scale) in float32 with
// scale = 1 / scale_factor when one was given, else in / out.
std::vector<int64_t> nearest_sources(int64_t in, int64_t out, c10::optional<double> scale_factor) {
  std::vector<int64_t> src(out);
  const float scale = scale_factor && *scale_factor > 0 ? static_cast<float>(1.0 / *scale_factor)
                                                        : static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    src[o] = out == in       ? o
             : out == 2 * in ? o >> 1
                             : std::min(static_cast<int64_t>(std::floor(static_cast<float>(o) * scale)), in - 1);
  }
  return src;
}

at::Tensor upsample_nearest2d(const at::Tensor& qx, at::OptionalIntArrayRef output_size,
                              c10::optional<at::ArrayRef<double>> scale_factors) {
  constexpr const char* op = "quantx::upsample_nearest2d";
  check_quint8(op, "qx", qx);
  TORCH_CHECK(qx.dim() == 4, op, ": qx should be a 4-D [N, C, H, W] tensor, got shape ", qx.sizes());
  TORCH_CHECK(output_size.has_value() != scale_factors.has_value(), op,
              ": exactly one of output_size and scale_factors should be given");
  int64_t oh, ow;
  c10::optional<double> sh, sw;
  if (output_size) {
    TORCH_CHECK(output_size->size() == 2, op, ": output_size should have 2 values, got ", *output_size);
    oh = (*output_size)[0];
    ow = (*output_size)[1];
  } else {
    TORCH_CHECK(scale_factors->size() == 2, op, ": scale_factors should have 2 values, got ", *scale_factors);
    sh = (*scale_factors)[0];
    sw = (*scale_factors)[1];
    oh = static_cast<int64_t>(std::floor(static_cast<double>(qx.size(2)) * *sh));
    ow = static_cast<int64_t>(std::floor(static_cast<double>(qx.size(3)) * *sw));
  }
  TORCH_CHECK(oh > 0 && ow > 0 && qx.size(2) > 0 && qx.size(3) > 0, op,
              ": input and output sizes should be > 0, got input ", qx.sizes(), " and output ", oh, "x", ow);
  const at::Tensor x = qx.contiguous(c10::MemoryFormat::ChannelsLast);
  at::Tensor y = empty_quantized({x.size(0), x.size(1), oh, ow}, x.options(), x.q_scale(),
                                             x.q_zero_point(), c10::MemoryFormat::ChannelsLast);
  const std::vector<int64_t> src_h = nearest_sources(x.size(2), oh, sh), src_w = nearest_sources(x.size(3), ow, sw);
  const uint8_t* px = u8_data(x);
  uint8_t* py = u8_data_mut(y);
  const int64_t c = x.size(1), pixels = x.size(0) * oh * ow;
  if (c == 0 || pixels == 0) return y;
  at::parallel_for(0, pixels, std::max<int64_t>(1, (int64_t{1} << 15) / c), [&](int64_t b, int64_t e) {
    kernels::u8_upsample_nearest_nhwc(x.size(2), x.size(3), c, oh, ow, src_h.data(), src_w.data(), px, py, b, e);
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("cat(Tensor[] qxs, int dim, float output_scale, int output_zero_point) -> Tensor");
  m.def("upsample_nearest2d(Tensor qx, int[]? output_size, float[]? scale_factors) -> Tensor");
}

static void register_kernels(torch::Library& m) {
  m.impl("cat", cat);
  m.impl("upsample_nearest2d", upsample_nearest2d);
}

TORCH_LIBRARY_IMPL(quantx, QuantizedCPU, m) { register_kernels(m); }

// A float tensor reaching these ops is a usage error; the same kernels report it clearly.
TORCH_LIBRARY_IMPL(quantx, CPU, m) { register_kernels(m); }

}  // namespace tqx::ops
