// Note [Rounding]'s float -> integer step on 16 lanes, for the AVX-512 files only (they include it;
// its internal linkage keeps each file's copy compiled with that file's flags).
#pragma once

#include <immintrin.h>

#include "kernels/quantize.h"

namespace tqx::kernels {
namespace {

// Clamp the float product to [qmin - zp, qmax - zp] (NaN becomes the lower bound, because vmaxps
// returns its second operand when the first is NaN), round half to even with vcvtps2dq, then add
// the zero point in int32.
struct AffineAvx512 {
  __m512 mul, lo, hi;
  __m512i zp;
  explicit AffineAvx512(const AffineParams& p)
      : mul(_mm512_set1_ps(p.inv_scale)),
        lo(_mm512_set1_ps(static_cast<float>(p.qmin - p.zero_point))),
        hi(_mm512_set1_ps(static_cast<float>(p.qmax - p.zero_point))),
        zp(_mm512_set1_epi32(p.zero_point)) {}
  __m512i quantize(__m512 x) const {
    __m512 v = _mm512_mul_ps(x, mul);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    return _mm512_add_epi32(_mm512_cvtps_epi32(v), zp);
  }
};

}  // namespace
}  // namespace tqx::kernels
