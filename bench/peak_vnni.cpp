// The vpdpbusd peak: 24 independent zmm accumulators, so neither latency nor registers limit it.
#include <immintrin.h>

#include <algorithm>
#include <chrono>

#include "peak.h"

namespace tqx::bench {

double vpdpbusd_peak_gmacs() {
  constexpr int kAcc = 24;
  constexpr long kIters = 20'000'000;
  __m512i acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(2);
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long it = 0; it < kIters / kAcc; ++it) {
#pragma GCC unroll 24
      for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
      __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[7]), "+v"(acc[15]), "+v"(acc[23]));
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(kIters / kAcc * kAcc) * 64.0 / s * 1e-9);
  }
  int sink = 0;
  for (int i = 0; i < kAcc; ++i) sink += _mm512_reduce_add_epi32(acc[i]);
  __asm__ volatile("" ::"r"(sink));
  return best;
}

}  // namespace tqx::bench
