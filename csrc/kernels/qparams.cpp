// Quantization ranges and qparams selection (float32 arithmetic chosen to equal PyTorch's).
#include "kernels/qparams.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tqx::kernels {
namespace {

// Bounds beyond this are clamped so that (max - min) / (qmax - qmin) stays finite.
constexpr float kMaxBound = 1.0e38f;

float sanitize_bound(float v) {
  if (std::isnan(v)) return 0.0f;
  return std::min(std::max(v, -kMaxBound), kMaxBound);
}

}  // namespace

QRange quant_range(QFormat format, bool reduce_range) {
  QRange r{0, 0};
  switch (format) {
    case QFormat::kUInt8: r = {0, 255}; break;
    case QFormat::kInt8: r = {-128, 127}; break;
    case QFormat::kInt16: r = {-32768, 32767}; break;
    case QFormat::kInt32: r = {-2147483648LL, 2147483647LL}; break;
    case QFormat::kUInt4: r = {0, 15}; break;
    case QFormat::kInt4: r = {-8, 7}; break;
    default:
      throw std::invalid_argument("quant_range: unknown format " +
                                  std::to_string(static_cast<int>(format)));
  }
  // PyTorch halves both ends (floor division); qint32 is never reduced.
  if (reduce_range && format != QFormat::kInt32) {
    auto floor_half = [](int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
    r = {floor_half(r.qmin), floor_half(r.qmax)};
  }
  return r;
}

QParams choose_qparams(float min_val, float max_val, int64_t qmin, int64_t qmax, bool symmetric,
                       float eps) {
  if (!(min_val <= max_val)) {
    // Nothing observed (min = +inf, max = -inf) or both NaN: PyTorch's default qparams.
    if (!(std::isnan(min_val) || std::isnan(max_val))) {
      return {1.0f, std::min(std::max<int64_t>(0, qmin), qmax)};
    }
  }
  const float lo = sanitize_bound(min_val);
  const float hi = sanitize_bound(max_val);
  const float min_neg = std::min(lo, 0.0f);
  const float max_pos = std::max(hi, 0.0f);
  // eps itself may be a bad value from the user; the scale must stay positive and finite.
  const float floor_eps = (eps > 0.0f && std::isfinite(eps)) ? eps : kDefaultScaleEps;

  if (symmetric) {
    const float amax = std::max(-min_neg, max_pos);
    // PyTorch divides by the Python float (qmax - qmin) / 2, which the float32 kernel rounds to float.
    const float denom = static_cast<float>(static_cast<double>(qmax - qmin) / 2.0);
    float scale = amax / denom;
    scale = std::max(scale, floor_eps);
    const int64_t zp = qmin < 0 ? 0 : (qmin + qmax + 1) / 2;
    return {scale, zp};
  }
  const float denom = static_cast<float>(qmax - qmin);
  float scale = (max_pos - min_neg) / denom;
  scale = std::max(scale, floor_eps);
  const double shifted = static_cast<double>(qmin) - static_cast<double>(std::nearbyint(min_neg / scale));
  const double clamped = std::min(std::max(shifted, static_cast<double>(qmin)), static_cast<double>(qmax));
  return {scale, static_cast<int64_t>(clamped)};
}

void choose_qparams_per_channel(const float* min_val, const float* max_val, int64_t n,
                                int64_t qmin, int64_t qmax, bool symmetric, float eps,
                                float* scale, int64_t* zero_point) {
  for (int64_t c = 0; c < n; ++c) {
    const QParams p = choose_qparams(min_val[c], max_val[c], qmin, qmax, symmetric, eps);
    scale[c] = p.scale;
    zero_point[c] = p.zero_point;
  }
}

}  // namespace tqx::kernels
