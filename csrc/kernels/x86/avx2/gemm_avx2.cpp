// AVX2 microkernels of the int8 convolution. AVX2 has no exact uint8 x int8 dot product
// (vpmaddubsw saturates its int16 pair sums), so each activation byte is split into its low seven
// bits and its top bit: both partial vpmaddubsw products then fit in int16 exactly, and vpmaddwd
// widens them (the top-bit part scaled by 128) into the int32 lanes.
#include "kernels/x86/gemm_ymm.h"

namespace tqx::kernels {
namespace {

struct DotAvx2 {
  static constexpr int kRows = 4;
  struct A {
    __m256i low7, top;
  };
  static A prepare(__m256i a) {
    return A{_mm256_and_si256(a, _mm256_set1_epi8(0x7F)),
             _mm256_and_si256(_mm256_srli_epi16(a, 7), _mm256_set1_epi8(0x01))};
  }
  static __m256i dot(__m256i acc, const A& a, __m256i b) {
    const __m256i lo = _mm256_madd_epi16(_mm256_maddubs_epi16(a.low7, b), _mm256_set1_epi16(1));
    const __m256i hi = _mm256_madd_epi16(_mm256_maddubs_epi16(a.top, b), _mm256_set1_epi16(128));
    return _mm256_add_epi32(acc, _mm256_add_epi32(lo, hi));
  }
  static __m256i dot_pairs(__m256i acc, __m256i x, __m256i w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
  }
};

const GemmKernels kKernels = ymm::make_kernels<DotAvx2>();

}  // namespace

const GemmKernels* gemm_kernels_avx2() { return &kKernels; }

}  // namespace tqx::kernels
