// AVX-VNNI microkernels of the int8 convolution: the 256-bit kernels with vpdpbusd / vpdpwssd
// (VEX encoding), for CPUs with AVX-VNNI and for comparing against the AVX-512 path.
#include "kernels/x86/gemm_ymm.h"

namespace tqx::kernels {
namespace {

struct DotAvxVnni {
  static constexpr int kRows = 6;
  using A = __m256i;
  static A prepare(__m256i a) { return a; }
  // acc += a . b in acc's register (gemm_ymm.h says why asm); {vex}: the AVX-VNNI encoding.
  static void dot(__m256i& acc, const A& a, __m256i b) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a), "x"(b));
  }
  static __m256i dot_pairs(__m256i acc, __m256i x, __m256i w) { return _mm256_dpwssd_avx_epi32(acc, x, w); }
};

const GemmKernels kKernels = ymm::make_kernels<DotAvxVnni>();

}  // namespace

const GemmKernels* gemm_kernels_avx_vnni() { return &kKernels; }

}  // namespace tqx::kernels
