// AVX2 variants of the element-wise family; bit-exact with eltwise_scalar.cpp.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

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

// y = table[x], 32 bytes at a time: row h of the table (entries 16h..16h+15, in both lanes) is
// looked up by the low nibble with vpshufb and kept where the high nibble equals h. Rows are
// loaded once per group of four vectors: with 16 registers they cannot all stay resident.
void u8_lut_avx2(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* y) {
  alignas(32) uint8_t rows[16][32];
  for (int h = 0; h < 16; ++h) {
    std::memcpy(rows[h], table + 16 * h, 16);
    std::memcpy(rows[h] + 16, table + 16 * h, 16);
  }
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  constexpr int kVecs = 4;
  int64_t i = 0;
  for (; i + 32 * kVecs <= n; i += 32 * kVecs) {
    __m256i lo[kVecs], hi[kVecs], r[kVecs];
    for (int v = 0; v < kVecs; ++v) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 32 * v));
      lo[v] = _mm256_and_si256(xv, nibble);
      hi[v] = _mm256_and_si256(_mm256_srli_epi16(xv, 4), nibble);
      r[v] = _mm256_setzero_si256();
    }
#pragma GCC unroll 16
    for (int h = 0; h < 16; ++h) {
      const __m256i row = _mm256_load_si256(reinterpret_cast<const __m256i*>(rows[h]));
      const __m256i hv = _mm256_set1_epi8(static_cast<char>(h));
      for (int v = 0; v < kVecs; ++v) {
        r[v] = _mm256_blendv_epi8(r[v], _mm256_shuffle_epi8(row, lo[v]), _mm256_cmpeq_epi8(hi[v], hv));
      }
    }
    for (int v = 0; v < kVecs; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i + 32 * v), r[v]);
  }
  if (i < n) eltwise_kernels_scalar().u8_lut(n - i, x + i, table, y + i);
}

const EltwiseKernels kAvx2{Isa::kAVX2, u8_mul_avx2, u8_lut_avx2};

}  // namespace

const EltwiseKernels* eltwise_kernels_avx2() { return &kAvx2; }

}  // namespace tqx::kernels
