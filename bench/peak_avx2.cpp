// The exact int8 peak without VNNI: independent vpmaddwd + vpaddd pairs on ymm registers (16
// products each), the instruction pair of the AVX2 convolution tiles (gemm_avx2.cpp).
#include <immintrin.h>

#include <algorithm>

#include "peak.h"

namespace tqx::bench {

#define TQX_MADD(t, a) "vpmaddwd %%ymm1, %%ymm0, %%ymm" #t "\n\tvpaddd %%ymm" #t ", %%ymm" #a ", %%ymm" #a "\n\t"

double vpmaddwd_peak_gmacs() {
  constexpr long kIters = 200'000;
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = thread_seconds();
    for (long it = 0; it < kIters; ++it) {
      __asm__ volatile(TQX_MADD(2, 9) TQX_MADD(3, 10) TQX_MADD(4, 11) TQX_MADD(5, 12) TQX_MADD(6, 13) TQX_MADD(7, 14)
                           TQX_MADD(8, 15)
                       :
                       :
                       : "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                         "xmm13", "xmm14", "xmm15");
    }
    best = std::max(best, static_cast<double>(kIters) * 7 * 16.0 / (thread_seconds() - t0) * 1e-9);
  }
  return best;
}

#undef TQX_MADD

}  // namespace tqx::bench
