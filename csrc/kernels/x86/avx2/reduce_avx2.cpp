// AVX2 variants of the reduction family; equal to reduce_scalar.cpp.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/reduce.h"

namespace tqx::kernels {
namespace {

float hmin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// Data goes first in vminps/vmaxps so NaNs are skipped; x * 0 + acc turns NaN on non-finite x.
bool minmax_avx2(int64_t n, const float* x, float* min, float* max) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 mn = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 mx = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 bad = zero;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i);
    mn = _mm256_min_ps(a, mn);
    mx = _mm256_max_ps(a, mx);
    bad = _mm256_fmadd_ps(a, zero, bad);
  }
  if (i < n) {
    // Pad the tail with NaN, which min/max skip and which must not raise the flag.
    alignas(32) float t[8];
    for (float& v : t) v = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(t, x + i, (n - i) * sizeof(float));
    const __m256 a = _mm256_load_ps(t);
    mn = _mm256_min_ps(a, mn);
    mx = _mm256_max_ps(a, mx);
    for (int64_t j = i; j < n; ++j) {
      if (!std::isfinite(x[j])) bad = _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN());
    }
  }
  *min = hmin(mn);
  *max = hmax(mx);
  return _mm256_movemask_ps(_mm256_cmp_ps(bad, bad, _CMP_UNORD_Q)) != 0;
}

void bin_index_avx2(int64_t n, const float* x, float lo, float inv_width, int32_t bins, int32_t* idx) {
  const __m256 vlo = _mm256_set1_ps(lo);
  const __m256 vinv = _mm256_set1_ps(inv_width);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 top = _mm256_set1_ps(static_cast<float>(bins - 1));
  int64_t i = 0;
  auto one = [&](const float* src, int32_t* dst) {
    __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(src), vlo), vinv);
    v = _mm256_min_ps(_mm256_max_ps(v, zero), top);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_cvttps_epi32(v));
  };
  for (; i + 8 <= n; i += 8) one(x + i, idx + i);
  if (i < n) {
    alignas(32) float t[8] = {};
    alignas(32) int32_t r[8];
    std::memcpy(t, x + i, (n - i) * sizeof(float));
    one(t, r);
    std::memcpy(idx + i, r, (n - i) * sizeof(int32_t));
  }
}

const ReduceKernels kAvx2 = {Isa::kAVX2, minmax_avx2, bin_index_avx2};

}  // namespace

const ReduceKernels* reduce_kernels_avx2() { return &kAvx2; }

}  // namespace tqx::kernels
