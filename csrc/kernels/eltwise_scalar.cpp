// Scalar reference of the element-wise family: the oracle of the SIMD variants and their fallback.
#include <algorithm>
#include <cmath>

#include "kernels/eltwise.h"

namespace tqx::kernels {
namespace {

void u8_mul_scalar(int64_t n, const uint8_t* a, const uint8_t* b, const MulParams& p, uint8_t* y) {
  // Note [Rounding] (requantize); the clamp before rounding cannot change the result.
  const float lo = static_cast<float>(p.qmin - p.out_zero_point), hi = static_cast<float>(p.qmax - p.out_zero_point);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t prod = (static_cast<int32_t>(a[i]) - p.a_zero_point) * (static_cast<int32_t>(b[i]) - p.b_zero_point);
    const float v = std::min(std::max(static_cast<float>(prod) * p.multiplier, lo), hi);
    y[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)) + p.out_zero_point);
  }
}

void u8_lut_scalar(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = table[x[i]];
}

constexpr EltwiseKernels kScalar{Isa::kScalar, u8_mul_scalar, u8_lut_scalar};

}  // namespace

const EltwiseKernels& eltwise_kernels_scalar() { return kScalar; }

}  // namespace tqx::kernels
