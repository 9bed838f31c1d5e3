// Scalar reference of the reduction family, and its dispatch ladder.
#include <cmath>
#include <limits>

#include "kernels/reduce.h"

namespace tqx::kernels {
namespace {

bool minmax_ref(int64_t n, const float* x, float* min, float* max) {
  float mn = std::numeric_limits<float>::infinity();
  float mx = -std::numeric_limits<float>::infinity();
  bool nonfinite = false;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (!std::isfinite(v)) {
      nonfinite = true;
      if (std::isnan(v)) continue;
    }
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  *min = mn;
  *max = mx;
  return nonfinite;
}

void bin_index_ref(int64_t n, const float* x, float lo, float inv_width, int32_t bins, int32_t* idx) {
  const float top = static_cast<float>(bins - 1);
  for (int64_t i = 0; i < n; ++i) {
    float v = (x[i] - lo) * inv_width;
    if (!(v > 0.0f)) v = 0.0f;  // also NaN
    if (v > top) v = top;
    idx[i] = static_cast<int32_t>(v);
  }
}

const ReduceKernels kScalar = {Isa::kScalar, minmax_ref, bin_index_ref};

}  // namespace

const ReduceKernels& reduce_kernels_scalar() { return kScalar; }

const ReduceKernels& reduce_kernels_for(Isa isa) {
  if (isa >= Isa::kAVX512) {
    if (const ReduceKernels* k = reduce_kernels_avx512()) return *k;
  }
  if (isa >= Isa::kAVX2) {
    if (const ReduceKernels* k = reduce_kernels_avx2()) return *k;
  }
  return reduce_kernels_scalar();
}

const ReduceKernels& reduce_kernels() { return reduce_kernels_for(active_isa()); }

}  // namespace tqx::kernels
