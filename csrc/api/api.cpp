// Implementation of the small public C++ API in api/api.h.
#include "api/api.h"

#include "kernels/isa.h"

#ifndef TQX_VERSION
#define TQX_VERSION "unknown"
#endif

namespace torchquantx {

std::string version() { return TQX_VERSION; }

std::string active_isa() { return tqx::kernels::isa_name(tqx::kernels::active_isa()); }

void set_max_isa(const std::string& name) { tqx::kernels::set_max_isa(tqx::kernels::parse_isa(name)); }

}  // namespace torchquantx
