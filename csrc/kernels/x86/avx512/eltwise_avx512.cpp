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

inline __mmask64 tail_mask64(int64_t remaining) { return (~uint64_t{0}) >> (64 - remaining); }

// Runs lookup(x) -> y over n bytes, 64 at a time, the tail under a mask.
template <typename Lookup>
void for_each_vector(int64_t n, const uint8_t* x, uint8_t* y, const Lookup& lookup) {
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    const __m512i a = lookup(_mm512_loadu_si512(x + i)), b = lookup(_mm512_loadu_si512(x + i + 64));
    _mm512_storeu_si512(y + i, a);
    _mm512_storeu_si512(y + i + 64, b);
  }
  for (; i < n; i += 64) {
    const __mmask64 m = n - i >= 64 ? ~__mmask64{0} : tail_mask64(n - i);
    _mm512_mask_storeu_epi8(y + i, m, lookup(_mm512_maskz_loadu_epi8(m, x + i)));
  }
}

// AVX-512BW: row h of the table (entries 16h..16h+15, in all four lanes) is looked up by the low
// nibble with vpshufb, merged under the mask of bytes whose high nibble is h.
void u8_lut_avx512(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* y) {
  __m512i rows[16];
  for (int h = 0; h < 16; ++h) {
    rows[h] = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * h)));
  }
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  for_each_vector(n, x, y, [&](__m512i xv) {
    const __m512i lo = _mm512_and_si512(xv, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(xv, 4), nibble);
    __m512i r = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int h = 0; h < 16; ++h) {
      r = _mm512_mask_shuffle_epi8(r, _mm512_cmpeq_epi8_mask(hi, _mm512_set1_epi8(static_cast<char>(h))), rows[h], lo);
    }
    return r;
  });
}

// idx selects bytes of the 128-byte table {t0, t1} by its low 7 bits (vpermi2b, AVX-512 VBMI).
// Issued through asm so that this file keeps the AVX-512 level's flags: VBMI is not one of our
// levels, and eltwise_kernels_avx512_vbmi() offers this path only where cpu_has_avx512_vbmi().
inline __m512i permi2b(__m512i idx, __m512i t0, __m512i t1) {
  __asm__("vpermi2b %2, %1, %0" : "+v"(idx) : "v"(t0), "v"(t1));
  return idx;
}

// AVX-512 VBMI: the whole table lives in four registers; two vpermi2b look up both halves and the
// top bit of each byte picks one.
void u8_lut_avx512_vbmi(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* y) {
  const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
  const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
  for_each_vector(n, x, y, [&](__m512i xv) {
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(xv), permi2b(xv, t0, t1), permi2b(xv, t2, t3));
  });
}

const EltwiseKernels kAvx512{Isa::kAVX512, u8_mul_avx512, u8_lut_avx512};
const EltwiseKernels kAvx512Vbmi{Isa::kAVX512, u8_mul_avx512, u8_lut_avx512_vbmi};

}  // namespace

const EltwiseKernels* eltwise_kernels_avx512() { return &kAvx512; }

const EltwiseKernels* eltwise_kernels_avx512_vbmi() { return cpu_has_avx512_vbmi() ? &kAvx512Vbmi : nullptr; }

}  // namespace tqx::kernels
