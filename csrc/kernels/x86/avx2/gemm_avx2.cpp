// AVX2 microkernels of the int8 convolution. AVX2 has no exact uint8 x int8 dot product
// (vpmaddubsw saturates its int16 pair sums), so each activation byte a is split into a & 0x7F and
// a & 0x80: the pair sums of both vpmaddubsw products fit in int16 exactly (127 * 128 * 2 = 32512;
// 128 * -128 * 2 = -32768), and vpmaddwd by ones widens each into the int32 lanes.
#include "kernels/x86/gemm_ymm.h"

namespace tqx::kernels {
namespace {

struct DotAvx2 {
  static constexpr int kRows = 4;
  struct A {
    __m256i low7, top;
  };
  static A prepare(__m256i a) {
    const __m256i m = _mm256_set1_epi8(0x7F);
    return A{_mm256_and_si256(a, m), _mm256_andnot_si256(m, a)};
  }
  // acc += a . b, the final add in acc's register (gemm_ymm.h says why asm).
  static void dot(__m256i& acc, const A& a, __m256i b) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i lo = _mm256_madd_epi16(_mm256_maddubs_epi16(a.low7, b), ones);
    const __m256i hi = _mm256_madd_epi16(_mm256_maddubs_epi16(a.top, b), ones);
    const __m256i sum = _mm256_add_epi32(lo, hi);
    __asm__("vpaddd %1, %0, %0" : "+x"(acc) : "x"(sum));
  }
  static __m256i dot_pairs(__m256i acc, __m256i x, __m256i w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
  }
};

const GemmKernels kKernels = ymm::make_kernels<DotAvx2>();

}  // namespace

const GemmKernels* gemm_kernels_avx2() { return &kKernels; }

}  // namespace tqx::kernels
