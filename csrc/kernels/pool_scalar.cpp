// Scalar reference of the pooling primitives: the oracle of the SIMD variants and their fallback.
#include <algorithm>

#include "kernels/pool.h"

namespace tqx::kernels {
namespace {

void u8_max_accumulate_scalar(int64_t n, const uint8_t* x, uint8_t* acc) {
  for (int64_t i = 0; i < n; ++i) acc[i] = std::max(acc[i], x[i]);
}

void u8_s32_accumulate_scalar(int64_t n, const uint8_t* x, int32_t* acc) {
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

constexpr PoolKernels kScalar{Isa::kScalar, u8_max_accumulate_scalar, u8_s32_accumulate_scalar};

}  // namespace

const PoolKernels& pool_kernels_scalar() { return kScalar; }

}  // namespace tqx::kernels
