// Note [Rounding]'s float -> integer step on 8 lanes, for the AVX2 files only (they include it;
// its internal linkage keeps each file's copy compiled with that file's flags).
#pragma once

#include <immintrin.h>

#include "kernels/quantize.h"

namespace tqx::kernels {
namespace {

// Clamp the float product first (vmaxps returns its second operand when the first is NaN, so NaN
// becomes the lower bound), round half to even with vcvtps2dq, add zp.
struct AffineAvx2 {
  __m256 mul, lo, hi;
  __m256i zp;
  explicit AffineAvx2(const AffineParams& p)
      : mul(_mm256_set1_ps(p.inv_scale)),
        lo(_mm256_set1_ps(static_cast<float>(p.qmin - p.zero_point))),
        hi(_mm256_set1_ps(static_cast<float>(p.qmax - p.zero_point))),
        zp(_mm256_set1_epi32(p.zero_point)) {}
  __m256i quantize(__m256 x) const {
    __m256 v = _mm256_mul_ps(x, mul);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
  }
};

}  // namespace
}  // namespace tqx::kernels
