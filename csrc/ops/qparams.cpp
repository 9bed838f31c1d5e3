// quantx::choose_qparams and quantx::quant_range: the range and qparams rules as operators.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "kernels/qparams.h"
#include "ops/common.h"

namespace tqx::ops {
namespace {

std::tuple<int64_t, int64_t> quant_range(c10::ScalarType dtype, bool reduce_range) {
  constexpr const char* op = "quantx::quant_range";
  kernels::QFormat f;
  switch (dtype) {
    case c10::kByte:
    case c10::kQUInt8: f = kernels::QFormat::kUInt8; break;
    case c10::kChar:
    case c10::kQInt8: f = kernels::QFormat::kInt8; break;
    case c10::kShort: f = kernels::QFormat::kInt16; break;
    case c10::kInt:
    case c10::kQInt32: f = kernels::QFormat::kInt32; break;
    case c10::kQUInt4x2: f = kernels::QFormat::kUInt4; break;
    default:
      TORCH_CHECK(false, op, ": dtype should be one of torch.uint8/quint8, torch.int8/qint8, torch.int16, "
                  "torch.int32/qint32, torch.quint4x2, got ", dtype_name(dtype));
  }
  const kernels::QRange r = kernels::quant_range(f, reduce_range);
  return {r.qmin, r.qmax};
}

std::tuple<at::Tensor, at::Tensor> choose_qparams(const at::Tensor& min_val, const at::Tensor& max_val,
                                                  int64_t quant_min, int64_t quant_max, bool symmetric,
                                                  double eps) {
  constexpr const char* op = "quantx::choose_qparams";
  check_float(op, "min_val", min_val);
  check_float(op, "max_val", max_val);
  TORCH_CHECK(min_val.sizes() == max_val.sizes(), op, ": min_val and max_val should have the same shape, got ",
              min_val.sizes(), " and ", max_val.sizes());
  TORCH_CHECK(min_val.dim() <= 1, op, ": min_val should be a scalar or 1-D (per channel), got shape ",
              min_val.sizes());
  check_qrange(op, quant_min, quant_max);
  TORCH_CHECK(std::isfinite(eps) && eps > 0.0, op, ": eps should be a finite number > 0, got ", eps);
  const at::Tensor lo = min_val.contiguous();
  const at::Tensor hi = max_val.contiguous();
  at::Tensor scale = at::empty(lo.sizes(), lo.options());
  at::Tensor zp = at::empty(lo.sizes(), lo.options().dtype(c10::kLong));
  kernels::choose_qparams_per_channel(lo.data_ptr<float>(), hi.data_ptr<float>(), lo.numel(), quant_min,
                                      quant_max, symmetric, static_cast<float>(eps), scale.data_ptr<float>(),
                                      zp.data_ptr<int64_t>());
  return {scale, zp};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("quant_range(ScalarType dtype, bool reduce_range=False) -> (int, int)", quant_range);
  m.def("choose_qparams(Tensor min_val, Tensor max_val, int quant_min, int quant_max, "
        "bool symmetric=False, float eps=1.1920928955078125e-07) -> (Tensor scale, Tensor zero_point)");
}

TORCH_LIBRARY_IMPL(quantx, CPU, m) {
  m.impl("choose_qparams", choose_qparams);
}

}  // namespace tqx::ops
