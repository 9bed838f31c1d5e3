// Measured int8 multiply-accumulate peaks of this core, the denominators of the conv benchmarks'
// "fraction of peak" (files compiled with their ISA's flags; call only when isa_supported says so).
#pragma once

namespace tqx::bench {

// GMAC/s of a loop of independent vpdpbusd (zmm) instructions.
double vpdpbusd_peak_gmacs();
// GMAC/s of a loop of independent vpmaddwd + vpaddd (ymm) pairs: the exact int8 peak without VNNI.
double vpmaddwd_peak_gmacs();
// GMAC/s of a loop of independent AMX tdpbusd instructions.
double tdpbusd_peak_gmacs();

}  // namespace tqx::bench
