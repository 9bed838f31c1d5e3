// AVX-512 (F/BW) variants of the pooling primitives; bit-exact with pool_scalar.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/pool.h"

namespace tqx::kernels {
namespace {

void u8_max_accumulate_avx512(int64_t n, const uint8_t* x, uint8_t* acc) {
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i v = _mm512_max_epu8(_mm512_loadu_si512(x + i), _mm512_loadu_si512(acc + i));
    _mm512_storeu_si512(acc + i, v);
  }
  if (i < n) {
    const __mmask64 m = (~uint64_t{0}) >> (64 - (n - i));
    const __m512i v = _mm512_max_epu8(_mm512_maskz_loadu_epi8(m, x + i), _mm512_maskz_loadu_epi8(m, acc + i));
    _mm512_mask_storeu_epi8(acc + i, m, v);
  }
}

void u8_s32_accumulate_avx512(int64_t n, const uint8_t* x, int32_t* acc) {
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int j = 0; j < 64; j += 16) {
      const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + j)));
      _mm512_storeu_si512(acc + i + j, _mm512_add_epi32(_mm512_loadu_si512(acc + i + j), v));
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512i v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + i));
    _mm512_mask_storeu_epi32(acc + i, m, _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, acc + i), v));
  }
}

constexpr PoolKernels kAvx512{Isa::kAVX512, u8_max_accumulate_avx512, u8_s32_accumulate_avx512};

}  // namespace

const PoolKernels* pool_kernels_avx512() { return &kAvx512; }

}  // namespace tqx::kernels
