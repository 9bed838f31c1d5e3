// Argument checks and layout helpers shared by the quantx operators.
#include "ops/common.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace tqx::ops {

Storage storage_for(const char* op, c10::ScalarType requested) {
  using c10::ScalarType;
  switch (requested) {
    case ScalarType::Byte:
    case ScalarType::QUInt8: return {ScalarType::Byte, 0, 255};
    case ScalarType::Char:
    case ScalarType::QInt8: return {ScalarType::Char, -128, 127};
    case ScalarType::Short: return {ScalarType::Short, -32768, 32767};
    case ScalarType::Int:
    case ScalarType::QInt32: return {ScalarType::Int, std::numeric_limits<int32_t>::min(),
                                     std::numeric_limits<int32_t>::max()};
    case ScalarType::QUInt4x2: return {ScalarType::Byte, 0, 15};
    default: break;
  }
  TORCH_CHECK(false, op, ": dtype should be one of torch.uint8, torch.int8, torch.int16, torch.int32 "
              "(or torch.quint8, torch.qint8, torch.qint32, torch.quint4x2), got ", dtype_name(requested));
}

Storage storage_of_tensor(const char* op, const char* arg, const at::Tensor& t) {
  const auto st = t.scalar_type();
  TORCH_CHECK(st == c10::kByte || st == c10::kChar || st == c10::kShort || st == c10::kInt, op, ": ", arg,
              " should be an integer tensor of dtype torch.uint8, torch.int8, torch.int16 or torch.int32, got ",
              dtype_name(st));
  return storage_for(op, st);
}

const char* dtype_name(c10::ScalarType t) {
  switch (t) {
    case c10::kByte: return "torch.uint8";
    case c10::kChar: return "torch.int8";
    case c10::kShort: return "torch.int16";
    case c10::kInt: return "torch.int32";
    case c10::kLong: return "torch.int64";
    case c10::kFloat: return "torch.float32";
    case c10::kDouble: return "torch.float64";
    case c10::kHalf: return "torch.float16";
    case c10::kBFloat16: return "torch.bfloat16";
    case c10::kBool: return "torch.bool";
    case c10::kQUInt8: return "torch.quint8";
    case c10::kQInt8: return "torch.qint8";
    case c10::kQInt32: return "torch.qint32";
    case c10::kQUInt4x2: return "torch.quint4x2";
    default: return c10::toString(t);
  }
}

void apply_range(const char* op, Storage& s, c10::optional<int64_t> quant_min,
                 c10::optional<int64_t> quant_max) {
  for (const auto& [arg, value] : {std::make_pair("quant_min", quant_min), std::make_pair("quant_max", quant_max)}) {
    TORCH_CHECK(!value.has_value() || (*value >= s.qmin && *value <= s.qmax), op, ": ", arg, " should be within [",
                s.qmin, ", ", s.qmax, "] for ", dtype_name(s.dtype), " storage, got ", *value);
  }
  if (quant_min.has_value()) s.qmin = *quant_min;
  if (quant_max.has_value()) s.qmax = *quant_max;
  check_qrange(op, s.qmin, s.qmax);
}

void check_float(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK(t.defined(), op, ": ", arg, " should be a defined tensor, got None");
  TORCH_CHECK(t.scalar_type() == c10::kFloat, op, ": ", arg,
              " should be a torch.float32 tensor, got ", dtype_name(t.scalar_type()));
  check_cpu(op, arg, t);
}

void check_cpu(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", arg, " should be on the CPU, got ", t.device());
  TORCH_CHECK(t.layout() == c10::kStrided, op, ": ", arg, " should be a dense (strided) tensor, got ",
              t.layout());
}

void check_scale(const char* op, double scale) {
  TORCH_CHECK(std::isfinite(scale) && scale > 0.0, op, ": scale should be a finite number > 0, got ", scale);
  const float f = static_cast<float>(scale);
  TORCH_CHECK(f > 0.0f && std::isfinite(f) && std::isfinite(1.0f / f), op,
              ": scale should be representable as a float32 with a finite reciprocal, got ", scale);
}

void check_zero_point(const char* op, int64_t zp, int64_t qmin, int64_t qmax) {
  TORCH_CHECK(zp >= qmin && zp <= qmax, op, ": zero_point should be within [quant_min, quant_max] = [",
              qmin, ", ", qmax, "], got ", zp);
}

void check_qrange(const char* op, int64_t qmin, int64_t qmax) {
  TORCH_CHECK(qmin <= qmax, op, ": quant_min should be <= quant_max, got quant_min=", qmin,
              ", quant_max=", qmax);
  TORCH_CHECK(qmin >= std::numeric_limits<int32_t>::min() && qmax <= std::numeric_limits<int32_t>::max(), op,
              ": quant_min and quant_max should fit in 32 bits, got [", qmin, ", ", qmax, "]");
}

int64_t check_axis(const char* op, const at::Tensor& t, int64_t axis) {
  const int64_t dim = t.dim();
  TORCH_CHECK(dim > 0, op, ": input should have at least one dimension for per-channel quantization, got a 0-d tensor");
  TORCH_CHECK(axis >= -dim && axis < dim, op, ": axis should be in [", -dim, ", ", dim - 1,
              "] for an input of shape ", t.sizes(), ", got ", axis);
  return axis < 0 ? axis + dim : axis;
}

at::Tensor check_channel_vector(const char* op, const char* arg, const at::Tensor& v, int64_t channels,
                                c10::ScalarType dtype) {
  TORCH_CHECK(v.defined(), op, ": ", arg, " should be a tensor, got None");
  check_cpu(op, arg, v);
  TORCH_CHECK(v.dim() == 1, op, ": ", arg, " should be 1-D, got shape ", v.sizes());
  TORCH_CHECK(v.numel() == channels, op, ": ", arg, " should have one entry per channel (", channels,
              "), got ", v.numel());
  return v.to(dtype).contiguous();
}

void check_channel_qparams(const char* op, const at::Tensor& scales, const at::Tensor& zero_points,
                           int64_t channels, int64_t qmin, int64_t qmax, at::Tensor* scales_f32,
                           at::Tensor* zps_i64) {
  TORCH_CHECK(scales.defined() && c10::isFloatingType(scales.scalar_type()), op,
              ": scales should be a floating-point tensor, got ",
              scales.defined() ? dtype_name(scales.scalar_type()) : "None");
  TORCH_CHECK(zero_points.defined() && (zero_points.scalar_type() == c10::kInt ||
                                        zero_points.scalar_type() == c10::kLong),
              op, ": zero_points should be an int32 or int64 tensor, got ",
              zero_points.defined() ? dtype_name(zero_points.scalar_type()) : "None");
  *scales_f32 = check_channel_vector(op, "scales", scales, channels, c10::kFloat);
  *zps_i64 = check_channel_vector(op, "zero_points", zero_points, channels, c10::kLong);
  const float* s = scales_f32->data_ptr<float>();
  const int64_t* z = zps_i64->data_ptr<int64_t>();
  for (int64_t c = 0; c < channels; ++c) {
    TORCH_CHECK(std::isfinite(s[c]) && s[c] > 0.0f && std::isfinite(1.0f / s[c]), op,
                ": scales should be finite and > 0, got scales[", c, "] = ", s[c]);
    TORCH_CHECK(z[c] >= qmin && z[c] <= qmax, op, ": zero_points should be within [", qmin, ", ", qmax,
                "], got zero_points[", c, "] = ", z[c]);
  }
}

ChannelView channel_view(const at::Tensor& t, int64_t axis) {
  ChannelView v{1, t.size(axis), 1};
  for (int64_t d = 0; d < axis; ++d) v.outer *= t.size(d);
  for (int64_t d = axis + 1; d < t.dim(); ++d) v.inner *= t.size(d);
  return v;
}

void parallel_chunks(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  constexpr int64_t kGrain = 1 << 15;
  if (n <= kGrain) {
    if (n > 0) fn(0, n);
    return;
  }
  at::parallel_for(0, n, kGrain, fn);
}

void parallel_rows(const ChannelView& v, const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t rows = v.outer * v.channels;
  const int64_t grain = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(v.inner, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) fn(r / v.channels, r % v.channels);
  });
}

kernels::AffineParams affine(double scale, int64_t zero_point, int64_t qmin, int64_t qmax) {
  return kernels::make_affine_params(static_cast<float>(scale), static_cast<int32_t>(zero_point),
                                     static_cast<int32_t>(qmin), static_cast<int32_t>(qmax));
}

std::vector<int64_t> broadcast_shape(const char* op, c10::IntArrayRef a, c10::IntArrayRef b) {
  const size_t n = std::max(a.size(), b.size());
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    TORCH_CHECK(da == db || da == 1 || db == 1, op, ": qa and qb should have broadcastable shapes, got ", a, " and ",
                b);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace tqx::ops
