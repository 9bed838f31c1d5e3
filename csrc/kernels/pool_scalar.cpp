// Scalar reference of the pooling primitives: the oracle of the SIMD variants and their fallback.
#include <algorithm>

#include "kernels/pool.h"

namespace tqx::kernels {
namespace {

void u8_max_windows_scalar(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step,
                           uint8_t* y) {
  for (int64_t p = 0; p < count; ++p, y += n) {
    std::fill_n(y, n, uint8_t{0});
    for (int64_t t = 0; t < taps; ++t) {
      const uint8_t* r = rows[t] + p * step;  // hoisted: stores to y could alias rows[] for the compiler
      for (int64_t c = 0; c < n; ++c) y[c] = std::max(y[c], r[c]);
    }
  }
}

void u8_avg_windows_scalar(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step,
                           int32_t bias, const AffineParams& p, uint8_t* y) {
  constexpr int64_t kBlock = 256;
  int32_t acc[kBlock];
  for (int64_t px = 0; px < count; ++px, y += n) {
    for (int64_t c0 = 0; c0 < n; c0 += kBlock) {
      const int64_t m = std::min(kBlock, n - c0);
      std::fill_n(acc, m, bias);
      for (int64_t t = 0; t < taps; ++t) {
        const uint8_t* r = rows[t] + px * step + c0;
        for (int64_t c = 0; c < m; ++c) acc[c] += r[c];
      }
      quantize_kernels_scalar().s32_u8_requantize(m, acc, y + c0, p);
    }
  }
}

constexpr PoolKernels kScalar{Isa::kScalar, u8_max_windows_scalar, u8_avg_windows_scalar};

}  // namespace

const PoolKernels& pool_kernels_scalar() { return kScalar; }

}  // namespace tqx::kernels
