// Gradients of learnable-scale fake quantization (LSQ): per-element terms for x, scale and
// zero point, in PyTorch's float32 formulas so that reductions over them match torch's.
#pragma once

#include <cstdint>

#include "kernels/isa.h"

namespace tqx::kernels {

struct LearnableGradParams {
  float scale;
  float inv_scale;       // 1.0f / scale (Note [Rounding])
  int64_t zero_point;    // the rounded, clamped zero point the backward uses
  int64_t qmin;
  int64_t qmax;
  float grad_factor;     // LSQ's gradient scale, applied to the scale and zero-point terms
};

// One ISA's implementation of the family; every ISA matches the scalar reference bit for bit.
struct FakeQuantizeGradKernels {
  Isa isa;
  // With xq = nearbyint(zero_point + x * inv_scale):
  //   inside [qmin, qmax]: dx = dy, dscale = dy * (fq(x) - x) * inv_scale * g, dzp = 0
  //   below / above:       dx = dy * 0, dscale = dy * (qmin|qmax - zero_point) * g,
  //                        dzp = -dy * scale * g
  // where fq(x) = (clamp(xq) - zero_point) * scale, each product evaluated left to right in float32
  // without contraction (PyTorch's portable kernel). The per-element dscale / dzero_point terms
  // are written out, not summed here: the operators sum them with ATen's reduction, as PyTorch
  // does, which keeps the summed gradients bit-equal to torch's.
  void (*f32_fake_quantize_learnable_grad)(int64_t n, const float* x, const float* dy, float* dx,
                                           float* dscale, float* dzero_point,
                                           const LearnableGradParams& p);
};

// The scalar reference: the test oracle and the fallback of the dispatch ladder.
const FakeQuantizeGradKernels& fake_quantize_grad_kernels_scalar();
// Per-ISA tables; null when this build has no such code.
const FakeQuantizeGradKernels* fake_quantize_grad_kernels_avx2();
const FakeQuantizeGradKernels* fake_quantize_grad_kernels_avx512();
// The table for `isa`: the best compiled table at or below it.
const FakeQuantizeGradKernels& fake_quantize_grad_kernels_for(Isa isa);
// The table for active_isa().
const FakeQuantizeGradKernels& fake_quantize_grad_kernels();

}  // namespace tqx::kernels
