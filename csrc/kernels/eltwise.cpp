// Run-time dispatch ladder of the element-wise family.
#include "kernels/eltwise.h"

namespace tqx::kernels {

const EltwiseKernels& eltwise_kernels_for(Isa isa) {
  if (isa >= Isa::kAVX512) {
    if (const EltwiseKernels* k = eltwise_kernels_avx512_vbmi()) return *k;
    if (const EltwiseKernels* k = eltwise_kernels_avx512()) return *k;
  }
  if (isa >= Isa::kAVX2) {
    if (const EltwiseKernels* k = eltwise_kernels_avx2()) return *k;
  }
  return eltwise_kernels_scalar();
}

const EltwiseKernels& eltwise_kernels() { return eltwise_kernels_for(active_isa()); }

}  // namespace tqx::kernels
