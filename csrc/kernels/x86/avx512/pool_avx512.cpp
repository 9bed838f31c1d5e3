// AVX-512 (F/BW) variants of the pooling primitives; bit-exact with pool_scalar.cpp.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/pool.h"
#include "kernels/x86/avx512/affine_avx512.h"

namespace tqx::kernels {
namespace {

inline __mmask64 mask64(int64_t remaining) {
  return remaining >= 64 ? ~__mmask64{0} : remaining <= 0 ? __mmask64{0} : (~uint64_t{0}) >> (64 - remaining);
}

// NV vectors of 64 channels (the last under a mask) kept in registers across all taps.
template <int NV>
void max_chunk(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step, int64_t c0,
               uint8_t* y) {
  __mmask64 m[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) m[j] = mask64(n - c0 - 64 * j);
  for (int64_t p = 0; p < count; ++p) {
    const int64_t off = p * step + c0;
    __m512i a[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) a[j] = _mm512_setzero_si512();
    for (int64_t t = 0; t < taps; ++t) {
      const uint8_t* r = rows[t] + off;
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) a[j] = _mm512_max_epu8(a[j], _mm512_maskz_loadu_epi8(m[j], r + 64 * j));
    }
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) _mm512_mask_storeu_epi8(y + p * n + c0 + 64 * j, m[j], a[j]);
  }
}

using MaxChunk = void (*)(int64_t, int64_t, const uint8_t* const*, int64_t, int64_t, int64_t, uint8_t*);
constexpr MaxChunk kMaxChunks[] = {max_chunk<1>, max_chunk<2>, max_chunk<3>, max_chunk<4>};

void u8_max_windows_avx512(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step,
                           uint8_t* y) {
  for (int64_t c0 = 0; c0 < n; c0 += 256) {
    kMaxChunks[(std::min<int64_t>(n - c0, 256) + 63) / 64 - 1](n, taps, rows, count, step, c0, y);
  }
}

// Note [Rounding] on int32 sums (affine_avx512.h), stored as bytes under a mask.
struct Requantize {
  AffineAvx512 affine;
  explicit Requantize(const AffineParams& p) : affine(p) {}
  void store(uint8_t* y, __m512i acc, __mmask16 m) const {
    _mm512_mask_cvtepi32_storeu_epi8(y, m, affine.quantize(_mm512_cvtepi32_ps(acc)));
  }
};

inline __mmask16 mask16(int64_t remaining) {
  return remaining >= 16  ? __mmask16(0xFFFF)
         : remaining <= 0 ? __mmask16(0)
                          : static_cast<__mmask16>((1u << remaining) - 1u);
}

// NV int32 vectors of 16 channels (the last under a mask) summed in registers across all taps.
template <int NV>
void avg_chunk(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step, int32_t bias,
               const Requantize& rq, int64_t c0, uint8_t* y) {
  __mmask16 m[NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) m[j] = mask16(n - c0 - 16 * j);
  for (int64_t p = 0; p < count; ++p) {
    const int64_t off = p * step + c0;
    __m512i a[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) a[j] = _mm512_set1_epi32(bias);
    for (int64_t t = 0; t < taps; ++t) {
      const uint8_t* r = rows[t] + off;
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) {
        a[j] = _mm512_add_epi32(a[j], _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m[j], r + 16 * j)));
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) rq.store(y + p * n + c0 + 16 * j, a[j], m[j]);
  }
}

using AvgChunk = void (*)(int64_t, int64_t, const uint8_t* const*, int64_t, int64_t, int32_t, const Requantize&,
                          int64_t, uint8_t*);
constexpr AvgChunk kAvgChunks[] = {avg_chunk<1>, avg_chunk<2>, avg_chunk<3>, avg_chunk<4>,
                                   avg_chunk<5>, avg_chunk<6>, avg_chunk<7>, avg_chunk<8>};

void u8_avg_windows_avx512(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step,
                           int32_t bias, const AffineParams& p, uint8_t* y) {
  const Requantize rq(p);
  for (int64_t c0 = 0; c0 < n; c0 += 128) {
    kAvgChunks[(std::min<int64_t>(n - c0, 128) + 15) / 16 - 1](n, taps, rows, count, step, bias, rq, c0, y);
  }
}

constexpr PoolKernels kAvx512{Isa::kAVX512, u8_max_windows_avx512, u8_avg_windows_avx512};

}  // namespace

const PoolKernels* pool_kernels_avx512() { return &kAvx512; }

}  // namespace tqx::kernels
