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

// y = table[x] for V vectors of 32 bytes: row h of the table (entries 16h..16h+15, broadcast to both
// lanes straight from memory) is looked up by the low nibble with vpshufb and kept where the high
// nibble equals h. Each row load serves all V vectors: 16 rows cannot stay in 16 registers.
template <int V>
void lookup(const uint8_t* x, const uint8_t* table, uint8_t* y) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  __m256i lo[V], hi[V], r[V];
  for (int v = 0; v < V; ++v) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * v));
    lo[v] = _mm256_and_si256(xv, nibble);
    hi[v] = _mm256_and_si256(_mm256_srli_epi16(xv, 4), nibble);
    r[v] = _mm256_setzero_si256();
  }
#pragma GCC unroll 16
  for (int h = 0; h < 16; ++h) {
    const __m256i row = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * h)));
    const __m256i hv = _mm256_set1_epi8(static_cast<char>(h));
    for (int v = 0; v < V; ++v) {
      r[v] = _mm256_blendv_epi8(r[v], _mm256_shuffle_epi8(row, lo[v]), _mm256_cmpeq_epi8(hi[v], hv));
    }
  }
  for (int v = 0; v < V; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 32 * v), r[v]);
}

void u8_lut_avx2(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* y) {
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) lookup<4>(x + i, table, y + i);
  for (; i + 32 <= n; i += 32) lookup<1>(x + i, table, y + i);
  if (i < n) {
    // The last n % 32 bytes through a padded copy (cat looks up short rows).
    alignas(32) uint8_t in[32] = {}, out[32];
    std::memcpy(in, x + i, static_cast<size_t>(n - i));
    lookup<1>(in, table, out);
    std::memcpy(y + i, out, static_cast<size_t>(n - i));
  }
}

const EltwiseKernels kAvx2{Isa::kAVX2, u8_mul_avx2, u8_lut_avx2};

}  // namespace

const EltwiseKernels* eltwise_kernels_avx2() { return &kAvx2; }

}  // namespace tqx::kernels
