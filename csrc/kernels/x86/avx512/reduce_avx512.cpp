// AVX-512 variants of the reduction family; equal to reduce_scalar.cpp.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/reduce.h"

namespace tqx::kernels {
namespace {

inline __mmask16 tail_mask(int64_t remaining) {
  return static_cast<__mmask16>((1u << remaining) - 1u);
}

// vminps/vmaxps return the second operand when the first is NaN: data goes first, so NaNs are
// skipped. x * 0 is NaN exactly for NaN and +-Inf, which flags non-finite input in one FMA.
bool minmax_avx512(int64_t n, const float* x, float* min, float* max) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 mn0 = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  __m512 mx0 = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 mn1 = mn0, mx1 = mx0;
  __m512 bad = zero;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_loadu_ps(x + i);
    const __m512 b = _mm512_loadu_ps(x + i + 16);
    mn0 = _mm512_min_ps(a, mn0);
    mx0 = _mm512_max_ps(a, mx0);
    mn1 = _mm512_min_ps(b, mn1);
    mx1 = _mm512_max_ps(b, mx1);
    bad = _mm512_fmadd_ps(a, zero, bad);
    bad = _mm512_fmadd_ps(b, zero, bad);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = (n - i >= 16) ? __mmask16(0xFFFF) : tail_mask(n - i);
    const __m512 a = _mm512_maskz_loadu_ps(m, x + i);
    mn0 = _mm512_mask_min_ps(mn0, m, a, mn0);
    mx0 = _mm512_mask_max_ps(mx0, m, a, mx0);
    bad = _mm512_mask3_fmadd_ps(a, zero, bad, m);
  }
  *min = _mm512_reduce_min_ps(_mm512_min_ps(mn0, mn1));
  *max = _mm512_reduce_max_ps(_mm512_max_ps(mx0, mx1));
  return _mm512_cmp_ps_mask(bad, bad, _CMP_UNORD_Q) != 0;
}

void bin_index_avx512(int64_t n, const float* x, float lo, float inv_width, int32_t bins, int32_t* idx) {
  const __m512 vlo = _mm512_set1_ps(lo);
  const __m512 vinv = _mm512_set1_ps(inv_width);
  const __m512 zero = _mm512_setzero_ps();
  const __m512 top = _mm512_set1_ps(static_cast<float>(bins - 1));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = (n - i >= 16) ? __mmask16(0xFFFF) : tail_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vlo), vinv);
    v = _mm512_min_ps(_mm512_max_ps(v, zero), top);
    _mm512_mask_storeu_epi32(idx + i, m, _mm512_cvttps_epi32(v));
  }
}

const ReduceKernels kAvx512 = {Isa::kAVX512, minmax_avx512, bin_index_avx512};

}  // namespace

const ReduceKernels* reduce_kernels_avx512() { return &kAvx512; }

}  // namespace tqx::kernels
