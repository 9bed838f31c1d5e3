// Helpers shared by the Google Benchmark files: skipping ISAs the CPU lacks.
#pragma once

#include <benchmark/benchmark.h>

#include "kernels/isa.h"

namespace tqx::bench {

// False (and the benchmark marked skipped) when this CPU cannot run `isa`.
inline bool usable(benchmark::State& state, tqx::kernels::Isa isa) {
  if (!tqx::kernels::isa_supported(isa)) {
    state.SkipWithError("ISA not supported on this CPU");
    return false;
  }
  return true;
}

}  // namespace tqx::bench
