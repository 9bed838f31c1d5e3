// Run-time choice of the instruction set the kernels use: detection, the TORCHQUANTX_ISA override.
#pragma once

#include <string>

namespace tqx::kernels {

// Ordered from least to most capable; a level implies every level below it on the CPUs we target.
enum class Isa : int {
  kScalar = 0,      // portable C++ reference kernels
  kAVX2 = 1,        // AVX2 + FMA
  kAVXVNNI = 2,     // AVX2 + AVX-VNNI (256-bit vpdpbusd)
  kAVX512 = 3,      // AVX-512 F/BW/VL/DQ
  kAVX512VNNI = 4,  // AVX-512 + VNNI
  kAMX = 5,         // AVX-512 VNNI + AMX-INT8 tiles (and the OS's permission to use them)
};

const char* isa_name(Isa isa);
// Parses "scalar", "avx2", "avx_vnni", "avx512", "avx512_vnni", "amx" (case-insensitive).
// Throws std::invalid_argument naming the value and the accepted names.
Isa parse_isa(const std::string& name);

// True when both the CPU (and OS) and this build support `isa`.
bool isa_supported(Isa isa);
// The best level this CPU supports.
Isa detected_isa();
// Features within a level that some kernels use when present (never a level: TORCHQUANTX_ISA does
// not name them). AVX-512 VBMI: vpermb / vpermi2b byte permutes (Ice Lake, Zen 4 and later).
bool cpu_has_avx512_vbmi();
// The level kernels dispatch to: detected_isa() capped by the environment variable
// TORCHQUANTX_ISA (read once) or by set_max_isa(). Throws std::invalid_argument if
// TORCHQUANTX_ISA holds an unknown name or a level this CPU lacks.
Isa active_isa();
// Caps dispatch at `isa` (tests use it to force the scalar path). Throws if unsupported.
void set_max_isa(Isa isa);
// Forgets set_max_isa(); dispatch goes back to the environment variable or detection.
void reset_max_isa();

}  // namespace tqx::kernels
