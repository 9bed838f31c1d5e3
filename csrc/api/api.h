// The C++ entry points of libtorchquantx for LibTorch applications (find_package(TorchQuantX)).
#pragma once

#include <string>

namespace torchquantx {

// The library version, e.g. "0.1.0". Calling anything here also guarantees the linker keeps
// libtorchquantx.so, whose static initialisers register torch.ops.quantx and the observers.
std::string version();

// The kernel ISA level in use ("scalar", "avx2", "avx_vnni", "avx512", "avx512_vnni", "amx") and a
// cap on it (the TORCHQUANTX_ISA environment variable does the same at start-up).
std::string active_isa();
void set_max_isa(const std::string& name);

}  // namespace torchquantx
