// CPU feature detection (cpuinfo, plus cpuid for AVX-VNNI and AMX) and the dispatch cap.
#include "kernels/isa.h"

#include <cpuid.h>
#include <cpuinfo.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <stdexcept>

namespace tqx::kernels {
namespace {

constexpr int kNoCap = -1;
std::atomic<int> g_cap{kNoCap};

bool has_avx_vnni() {
  // CPUID.(EAX=7, ECX=1):EAX bit 4 is AVX-VNNI. cpuinfo in Debian 12 predates this flag.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
  return (eax >> 4) & 1u;
}

// AMX-TILE and AMX-INT8 (CPUID.(7,0):EDX bits 24, 25), tile state enabled by the OS (XCR0 bits 17,
// 18), and this process allowed to use it: Linux asks each process to request the tile data
// state once (arch_prctl ARCH_REQ_XCOMP_PERM); without it the first tile instruction faults.
bool has_amx_int8() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  if (!((edx >> 24) & 1u) || !((edx >> 25) & 1u)) return false;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1u)) return false;  // OSXSAVE
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if (((xcr0_lo >> 17) & 3u) != 3u) return false;
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
#endif
  return true;
}

Isa detect() {
  if (!cpuinfo_initialize()) return Isa::kScalar;
  const bool avx2 = cpuinfo_has_x86_avx2() && cpuinfo_has_x86_fma3();
  const bool avx512 = avx2 && cpuinfo_has_x86_avx512f() && cpuinfo_has_x86_avx512bw() &&
                      cpuinfo_has_x86_avx512vl() && cpuinfo_has_x86_avx512dq();
  if (avx512 && cpuinfo_has_x86_avx512vnni()) return has_amx_int8() ? Isa::kAMX : Isa::kAVX512VNNI;
  if (avx512) return Isa::kAVX512;
  if (avx2 && has_avx_vnni()) return Isa::kAVXVNNI;
  if (avx2) return Isa::kAVX2;
  return Isa::kScalar;
}

Isa env_cap_or(Isa fallback) {
  const char* env = std::getenv("TORCHQUANTX_ISA");
  if (env == nullptr || *env == '\0') return fallback;
  const Isa isa = parse_isa(env);
  if (!isa_supported(isa)) {
    throw std::invalid_argument(std::string("TORCHQUANTX_ISA should name a level this CPU supports (best: ") +
                                isa_name(detected_isa()) + "), got '" + env + "'");
  }
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAVX2: return "avx2";
    case Isa::kAVXVNNI: return "avx_vnni";
    case Isa::kAVX512: return "avx512";
    case Isa::kAVX512VNNI: return "avx512_vnni";
    case Isa::kAMX: return "amx";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (Isa isa : {Isa::kScalar, Isa::kAVX2, Isa::kAVXVNNI, Isa::kAVX512, Isa::kAVX512VNNI, Isa::kAMX}) {
    if (lower == isa_name(isa)) return isa;
  }
  throw std::invalid_argument(
      "ISA name should be one of scalar, avx2, avx_vnni, avx512, avx512_vnni, amx, got '" + name + "'");
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

bool cpu_has_avx512_vbmi() {
  static const bool has = cpuinfo_initialize() && cpuinfo_has_x86_avx512vbmi();
  return has;
}

bool isa_supported(Isa isa) {
  const Isa best = detected_isa();
  if (isa == Isa::kAVXVNNI) {
    // AVX-VNNI is its own feature: an AVX-512 VNNI CPU need not have the VEX encoding.
    return best == Isa::kAVXVNNI || (best >= Isa::kAVX2 && has_avx_vnni());
  }
  if (isa == Isa::kAVX512 || isa == Isa::kAVX512VNNI || isa == Isa::kAMX) return best >= isa;
  return static_cast<int>(isa) <= static_cast<int>(best);
}

Isa active_isa() {
  const int cap = g_cap.load(std::memory_order_relaxed);
  if (cap != kNoCap) return static_cast<Isa>(cap);
  static const Isa env_isa = env_cap_or(detected_isa());
  return env_isa;
}

void set_max_isa(Isa isa) {
  if (!isa_supported(isa)) {
    throw std::invalid_argument(std::string("set_isa: isa should be one this CPU supports (best: ") +
                                isa_name(detected_isa()) + "), got '" + isa_name(isa) + "'");
  }
  g_cap.store(static_cast<int>(isa), std::memory_order_relaxed);
}

void reset_max_isa() { g_cap.store(kNoCap, std::memory_order_relaxed); }

}  // namespace tqx::kernels
