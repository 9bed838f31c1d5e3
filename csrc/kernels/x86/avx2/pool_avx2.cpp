// AVX2 variants of the pooling primitives; bit-exact with pool_scalar.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/pool.h"
#include "kernels/x86/avx2/affine_avx2.h"

namespace tqx::kernels {
namespace {

inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// One output pixel: the window rows[t] + off.
void max_one(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t off, uint8_t* y) {
  int64_t c = 0;
  for (; c + 64 <= n; c += 64) {
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
    for (int64_t t = 0; t < taps; ++t) {
      a = _mm256_max_epu8(a, load32(rows[t] + off + c));
      b = _mm256_max_epu8(b, load32(rows[t] + off + c + 32));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + c), a);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + c + 32), b);
  }
  for (; c + 32 <= n; c += 32) {
    __m256i a = _mm256_setzero_si256();
    for (int64_t t = 0; t < taps; ++t) a = _mm256_max_epu8(a, load32(rows[t] + off + c));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + c), a);
  }
  for (; c + 16 <= n; c += 16) {
    __m128i a = _mm_setzero_si128();
    for (int64_t t = 0; t < taps; ++t)
      a = _mm_max_epu8(a, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[t] + off + c)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + c), a);
  }
  for (; c < n; ++c) {
    uint8_t v = 0;
    for (int64_t t = 0; t < taps; ++t) v = rows[t][off + c] > v ? rows[t][off + c] : v;
    y[c] = v;
  }
}

inline __m256i widen8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// Note [Rounding] on int32 sums (affine_avx2.h): float(acc) * multiplier clamped to
// [qmin - zp, qmax - zp] (NaN to the lower bound), round half to even, + zp; 8 bytes out.
struct Requantize {
  AffineAvx2 affine;
  explicit Requantize(const AffineParams& p) : affine(p) {}
  __m128i apply(__m256i acc) const {
    const __m256i q = affine.quantize(_mm256_cvtepi32_ps(acc));  // in [0, 255]
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return _mm_packus_epi16(w, w);
  }
};

// One output pixel: the window rows[t] + off.
void avg_one(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t off, int32_t bias, const AffineParams& p,
             const Requantize& rq, uint8_t* y) {
  const __m256i b = _mm256_set1_epi32(bias);
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    __m256i a0 = b, a1 = b, a2 = b, a3 = b;
    for (int64_t t = 0; t < taps; ++t) {
      const uint8_t* r = rows[t] + off + c;
      a0 = _mm256_add_epi32(a0, widen8(r));
      a1 = _mm256_add_epi32(a1, widen8(r + 8));
      a2 = _mm256_add_epi32(a2, widen8(r + 16));
      a3 = _mm256_add_epi32(a3, widen8(r + 24));
    }
    const __m128i lo = _mm_unpacklo_epi64(rq.apply(a0), rq.apply(a1));
    const __m128i hi = _mm_unpacklo_epi64(rq.apply(a2), rq.apply(a3));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + c), lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + c + 16), hi);
  }
  for (; c + 8 <= n; c += 8) {
    __m256i a = b;
    for (int64_t t = 0; t < taps; ++t) a = _mm256_add_epi32(a, widen8(rows[t] + off + c));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + c), rq.apply(a));
  }
  if (c < n) {
    // The last n % 8 channels: exact sums, then the reference requantize.
    int32_t acc[8];
    for (int64_t j = 0; j < n - c; ++j) {
      int32_t s = bias;
      for (int64_t t = 0; t < taps; ++t) s += rows[t][off + c + j];
      acc[j] = s;
    }
    quantize_kernels_scalar().s32_u8_requantize(n - c, acc, y + c, p);
  }
}

void u8_max_windows_avx2(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step, uint8_t* y) {
  for (int64_t p = 0; p < count; ++p) max_one(n, taps, rows, p * step, y + p * n);
}

void u8_avg_windows_avx2(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step, int32_t bias,
                         const AffineParams& p, uint8_t* y) {
  const Requantize rq(p);
  for (int64_t px = 0; px < count; ++px) avg_one(n, taps, rows, px * step, bias, p, rq, y + px * n);
}

constexpr PoolKernels kAvx2{Isa::kAVX2, u8_max_windows_avx2, u8_avg_windows_avx2};

}  // namespace

const PoolKernels* pool_kernels_avx2() { return &kAvx2; }

}  // namespace tqx::kernels
