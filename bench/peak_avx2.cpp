// The int8 peaks without VNNI, loops of independent instruction groups on ymm registers:
// vpmaddwd + vpaddd (16 products, exact for any operands: the AVX2 int16 tiles of gemm_avx2.cpp)
// and vpmaddubsw + vpmaddwd-by-ones + vpaddd (32 products, exact when the unsigned bytes are below
// 128: the 7-bit tiles).
#include <immintrin.h>

#include <algorithm>

#include "peak.h"

namespace tqx::bench {
namespace {

// Best of five timings of `iters` calls of body(), in GMAC/s.
template <class Body>
double best_rate(long iters, double macs_per_iter, Body body) {
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = thread_seconds();
    for (long it = 0; it < iters; ++it) body();
    best = std::max(best, static_cast<double>(iters) * macs_per_iter / (thread_seconds() - t0) * 1e-9);
  }
  return best;
}

}  // namespace

#define TQX_MADD(t, a) "vpmaddwd %%ymm1, %%ymm0, %%ymm" #t "\n\tvpaddd %%ymm" #t ", %%ymm" #a ", %%ymm" #a "\n\t"
#define TQX_UBS(t, a)                                                                                          \
  "vpmaddubsw %%ymm1, %%ymm0, %%ymm" #t "\n\tvpmaddwd %%ymm" #t ", %%ymm2, %%ymm" #t "\n\tvpaddd %%ymm" #t \
  ", %%ymm" #a ", %%ymm" #a "\n\t"

double vpmaddwd_peak_gmacs() {
  return best_rate(200'000, 7 * 16.0, [] {
    __asm__ volatile(TQX_MADD(2, 9) TQX_MADD(3, 10) TQX_MADD(4, 11) TQX_MADD(5, 12) TQX_MADD(6, 13) TQX_MADD(7, 14)
                         TQX_MADD(8, 15)
                     :
                     :
                     : "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                       "xmm13", "xmm14", "xmm15");
  });
}

double vpmaddubsw_peak_gmacs() {
  return best_rate(200'000, 6 * 32.0, [] {
    __asm__ volatile(TQX_UBS(3, 9) TQX_UBS(4, 10) TQX_UBS(5, 11) TQX_UBS(6, 12) TQX_UBS(7, 13) TQX_UBS(8, 14)
                     :
                     :
                     : "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
                       "xmm14");
  });
}

#undef TQX_MADD
#undef TQX_UBS

}  // namespace tqx::bench
