// AVX-512 (F/BW) variants of the element-wise family; bit-exact with eltwise_scalar.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/eltwise.h"

namespace tqx::kernels {
namespace {

inline __mmask16 tail_mask(int64_t remaining) { return static_cast<__mmask16>((1u << remaining) - 1u); }

// Note [Rounding]: the exact int32 product in float32, times the multiplier, clamped to
// [qmin - zy, qmax - zy] before the round-half-even conversion, then + zy.
struct MulConsts {
  __m512i za, zb, zy;
  __m512 mult, lo, hi;
  explicit MulConsts(const MulParams& p)
      : za(_mm512_set1_epi32(p.a_zero_point)), zb(_mm512_set1_epi32(p.b_zero_point)),
        zy(_mm512_set1_epi32(p.out_zero_point)), mult(_mm512_set1_ps(p.multiplier)),
        lo(_mm512_set1_ps(static_cast<float>(p.qmin - p.out_zero_point))),
        hi(_mm512_set1_ps(static_cast<float>(p.qmax - p.out_zero_point))) {}
  void apply(const uint8_t* a, const uint8_t* b, uint8_t* y, __mmask16 m) const {
    const __m512i va = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, a)), za);
    const __m512i vb = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, b)), zb);
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_mullo_epi32(va, vb)), mult);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    _mm512_mask_cvtepi32_storeu_epi8(y, m, _mm512_add_epi32(_mm512_cvtps_epi32(v), zy));
  }
};

void u8_mul_avx512(int64_t n, const uint8_t* a, const uint8_t* b, const MulParams& p, uint8_t* y) {
  const MulConsts c(p);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    c.apply(a + i, b + i, y + i, 0xFFFF);
    c.apply(a + i + 16, b + i + 16, y + i + 16, 0xFFFF);
    c.apply(a + i + 32, b + i + 32, y + i + 32, 0xFFFF);
    c.apply(a + i + 48, b + i + 48, y + i + 48, 0xFFFF);
  }
  for (; i < n; i += 16) c.apply(a + i, b + i, y + i, n - i >= 16 ? __mmask16(0xFFFF) : tail_mask(n - i));
}

const EltwiseKernels kAvx512{Isa::kAVX512, u8_mul_avx512, eltwise_kernels_scalar().u8_lut};

}  // namespace

const EltwiseKernels* eltwise_kernels_avx512() { return &kAvx512; }

}  // namespace tqx::kernels
