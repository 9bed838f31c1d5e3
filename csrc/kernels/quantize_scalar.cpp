// Scalar reference of the quantize family: the oracle every SIMD variant must match bit for bit.
#include <cmath>
#include <cstdint>

#include "kernels/quantize.h"
#include "kernels/rounding.h"

namespace tqx::kernels {
namespace {

// Note [Rounding], written out literally.
template <typename Q>
Q quantize_one(float x, const AffineParams& p) {
  const float v = x * p.inv_scale;
  if (std::isnan(v)) return static_cast<Q>(p.qmin);
  const float r = std::nearbyint(v);
  // PyTorch adds the zero point in float32 before its int64 cast; the sum is exact for every
  // range but 32 bits, where keeping float32 makes qint32 results match too.
  const double t = static_cast<double>(static_cast<float>(p.zero_point) + r);
  if (t <= p.qmin) return static_cast<Q>(p.qmin);
  if (t >= p.qmax) return static_cast<Q>(p.qmax);
  return static_cast<Q>(static_cast<int64_t>(t));
}

template <typename Q>
void quantize_ref(int64_t n, const float* x, Q* y, const AffineParams& p) {
  for (int64_t i = 0; i < n; ++i) y[i] = quantize_one<Q>(x[i], p);
}

template <typename Q>
void dequantize_ref(int64_t n, const Q* q, float* y, const AffineParams& p) {
  // The difference is taken in integers (exact even for 32-bit values), then converted once.
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<float>(static_cast<int64_t>(q[i]) - p.zero_point) * p.scale;
  }
}

template <typename Q>
void requantize_ref(int64_t n, const int32_t* acc, Q* y, const AffineParams& p) {
  for (int64_t i = 0; i < n; ++i) y[i] = quantize_one<Q>(static_cast<float>(acc[i]), p);
}

void fake_quantize_ref(int64_t n, const float* x, float* y, uint8_t* mask, const AffineParams& p) {
  const float zp = static_cast<float>(p.zero_point);
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] * p.inv_scale;
    const float t = zp + std::nearbyint(v);  // NaN stays NaN: outside the range
    const bool inside = t >= static_cast<float>(p.qmin) && t <= static_cast<float>(p.qmax);
    float c = t;
    if (!inside) c = (t > static_cast<float>(p.qmax)) ? static_cast<float>(p.qmax) : static_cast<float>(p.qmin);
    y[i] = (c - zp) * p.scale;
    if (mask != nullptr) mask[i] = inside ? 1 : 0;
  }
}

void interleave3_ref(int64_t n, const uint8_t* p0, const uint8_t* p1, const uint8_t* p2, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i, y += 3) {
    y[0] = p0[i];
    y[1] = p1[i];
    y[2] = p2[i];
  }
}

const QuantizeKernels kScalar = {
    Isa::kScalar,
    quantize_ref<uint8_t>,
    quantize_ref<int8_t>,
    quantize_ref<int16_t>,
    quantize_ref<int32_t>,
    dequantize_ref<uint8_t>,
    dequantize_ref<int8_t>,
    dequantize_ref<int16_t>,
    dequantize_ref<int32_t>,
    requantize_ref<uint8_t>,
    requantize_ref<int8_t>,
    fake_quantize_ref,
    interleave3_ref,
};

}  // namespace

const QuantizeKernels& quantize_kernels_scalar() { return kScalar; }

}  // namespace tqx::kernels
