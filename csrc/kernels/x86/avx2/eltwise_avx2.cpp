// AVX2 variants of the element-wise family; bit-exact with eltwise_scalar.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/eltwise.h"

namespace tqx::kernels {
namespace {

// Note [Rounding], as in the AVX-512 file: exact int32 product, float32 multiply, clamp, RNE.
struct MulConsts {
  __m256i za, zb, zy;
  __m256 mult, lo, hi;
  explicit MulConsts(const MulParams& p)
      : za(_mm256_set1_epi32(p.a_zero_point)), zb(_mm256_set1_epi32(p.b_zero_point)),
        zy(_mm256_set1_epi32(p.out_zero_point)), mult(_mm256_set1_ps(p.multiplier)),
        lo(_mm256_set1_ps(static_cast<float>(p.qmin - p.out_zero_point))),
        hi(_mm256_set1_ps(static_cast<float>(p.qmax - p.out_zero_point))) {}
  // 8 results as int32 lanes, already inside [qmin, qmax].
  __m256i apply8(const uint8_t* a, const uint8_t* b) const {
    const __m256i va = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a))), za);
    const __m256i vb = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b))), zb);
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_mullo_epi32(va, vb)), mult);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), zy);
  }
};

inline __m128i pack8(__m256i v) {
  return _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

void u8_mul_avx2(int64_t n, const uint8_t* a, const uint8_t* b, const MulParams& p, uint8_t* y) {
  const MulConsts c(p);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i lo = pack8(c.apply8(a + i, b + i)), hi = pack8(c.apply8(a + i + 8, b + i + 8));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm_packus_epi16(lo, hi));
  }
  if (i < n) eltwise_kernels_scalar().u8_mul(n - i, a + i, b + i, p, y + i);
}

const EltwiseKernels kAvx2{Isa::kAVX2, u8_mul_avx2, eltwise_kernels_scalar().u8_lut};

}  // namespace

const EltwiseKernels* eltwise_kernels_avx2() { return &kAvx2; }

}  // namespace tqx::kernels
