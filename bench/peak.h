// Measured int8 multiply-accumulate peaks of this core, the denominators of the conv benchmarks'
// "fraction of peak" (files compiled with their ISA's flags; call only when isa_supported says so).
#pragma once

#include <time.h>

namespace tqx::bench {

// Thread CPU time, as Google Benchmark's rates: time the scheduler gives to other processes on a
// shared machine counts against neither the peaks nor the kernels.
inline double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// GMAC/s of a loop of independent vpdpbusd (zmm) instructions.
double vpdpbusd_peak_gmacs();
// GMAC/s of a loop of independent vpmaddwd + vpaddd (ymm) pairs: the exact int8 peak without VNNI.
double vpmaddwd_peak_gmacs();
// GMAC/s of vpmaddubsw + vpmaddwd + vpaddd groups (ymm): the 7-bit AVX2 peak.
double vpmaddubsw_peak_gmacs();
// GMAC/s of a loop of independent AMX tdpbusd instructions.
double tdpbusd_peak_gmacs();

}  // namespace tqx::bench
