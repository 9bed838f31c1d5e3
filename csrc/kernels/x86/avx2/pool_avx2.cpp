// AVX2 variants of the pooling primitives; bit-exact with pool_scalar.cpp.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/pool.h"

namespace tqx::kernels {
namespace {

void u8_max_accumulate_avx2(int64_t n, const uint8_t* x, uint8_t* acc) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_max_epu8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)),
                                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i), v);
  }
  for (; i < n; ++i) acc[i] = std::max(acc[i], x[i]);
}

void u8_s32_accumulate_avx2(int64_t n, const uint8_t* x, int32_t* acc) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i)));
    __m256i* a = reinterpret_cast<__m256i*>(acc + i);
    _mm256_storeu_si256(a, _mm256_add_epi32(_mm256_loadu_si256(a), v));
  }
  for (; i < n; ++i) acc[i] += x[i];
}

constexpr PoolKernels kAvx2{Isa::kAVX2, u8_max_accumulate_avx2, u8_s32_accumulate_avx2};

}  // namespace

const PoolKernels* pool_kernels_avx2() { return &kAvx2; }

}  // namespace tqx::kernels
