// Reduction kernels used by observers: min/max with a non-finite flag, and histogram bin indices.
#pragma once

#include <cstdint>

#include "kernels/isa.h"

namespace tqx::kernels {

struct ReduceKernels {
  Isa isa;
  // *min / *max over the elements that are not NaN (+-Inf included); +inf / -inf when there are
  // none. Returns true when any element was NaN or +-Inf.
  bool (*f32_minmax)(int64_t n, const float* x, float* min, float* max);
  // idx[i] = int(clamp((x[i] - lo) * inv_width, 0, bins - 1)), truncating toward zero;
  // NaN gives 0 (callers filter non-finite values first).
  void (*f32_bin_index)(int64_t n, const float* x, float lo, float inv_width, int32_t bins,
                        int32_t* idx);
};

const ReduceKernels& reduce_kernels_scalar();
const ReduceKernels* reduce_kernels_avx2();
const ReduceKernels* reduce_kernels_avx512();
const ReduceKernels& reduce_kernels_for(Isa isa);
const ReduceKernels& reduce_kernels();

}  // namespace tqx::kernels
