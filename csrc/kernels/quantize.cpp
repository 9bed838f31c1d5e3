// Parameter helpers and the run-time dispatch ladder of the quantize family.
#include "kernels/quantize.h"

namespace tqx::kernels {

AffineParams make_affine_params(float scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  // Note [Rounding]: float32 reciprocal, computed once.
  return AffineParams{scale, 1.0f / scale, zero_point, qmin, qmax};
}

AffineParams make_requant_params(float multiplier, int32_t zero_point, int32_t qmin, int32_t qmax) {
  return AffineParams{1.0f / multiplier, multiplier, zero_point, qmin, qmax};
}

const QuantizeKernels& quantize_kernels_for(Isa isa) {
  if (isa >= Isa::kAVX512) {
    if (const QuantizeKernels* k = quantize_kernels_avx512()) return *k;
  }
  if (isa >= Isa::kAVX2) {
    if (const QuantizeKernels* k = quantize_kernels_avx2()) return *k;
  }
  return quantize_kernels_scalar();
}

const QuantizeKernels& quantize_kernels() { return quantize_kernels_for(active_isa()); }

}  // namespace tqx::kernels
