// The vpdpbusd peak: 24 independent zmm accumulators, so neither latency nor registers limit it.
#include <immintrin.h>

#include <algorithm>

#include "peak.h"

namespace tqx::bench {

#define TQX_DPBUSD(r) "vpdpbusd %%zmm1, %%zmm0, %%zmm" #r "\n\t"

// The accumulators are named registers of one asm block: as an array of intrinsics GCC 12 kept
// them in memory (a load, vpdpbusd and store each), and the "peak" was a third of the real one.
double vpdpbusd_peak_gmacs() {
  constexpr long kIters = 100'000;  // 2.4M vpdpbusd, about a millisecond
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = thread_seconds();
    for (long it = 0; it < kIters; ++it) {
      __asm__ volatile(
          TQX_DPBUSD(8) TQX_DPBUSD(9) TQX_DPBUSD(10) TQX_DPBUSD(11) TQX_DPBUSD(12) TQX_DPBUSD(13) TQX_DPBUSD(14)
              TQX_DPBUSD(15) TQX_DPBUSD(16) TQX_DPBUSD(17) TQX_DPBUSD(18) TQX_DPBUSD(19) TQX_DPBUSD(20) TQX_DPBUSD(21)
                  TQX_DPBUSD(22) TQX_DPBUSD(23) TQX_DPBUSD(24) TQX_DPBUSD(25) TQX_DPBUSD(26) TQX_DPBUSD(27)
                      TQX_DPBUSD(28) TQX_DPBUSD(29) TQX_DPBUSD(30) TQX_DPBUSD(31)
          :
          :
          : "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19",
            "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
    }
    best = std::max(best, static_cast<double>(kIters) * 24 * 64.0 / (thread_seconds() - t0) * 1e-9);
  }
  return best;
}

#undef TQX_DPBUSD

}  // namespace tqx::bench
