// Gradients of learnable-scale fake quantization (LSQ): per-element terms for x, scale and
// zero point, in PyTorch's float32 formulas so that reductions over them match torch's.
#pragma once

#include <cstdint>

namespace tqx::kernels {

struct LearnableGradParams {
  float scale;
  float inv_scale;       // 1.0f / scale (Note [Rounding])
  int64_t zero_point;    // the rounded, clamped zero point the backward uses
  int64_t qmin;
  int64_t qmax;
  float grad_factor;     // LSQ's gradient scale, applied to the scale and zero-point terms
};

// With xq = nearbyint(zero_point + x * inv_scale):
//   inside [qmin, qmax]: dx = dy, dscale = dy * (fq(x) - x) * inv_scale * g, dzp = 0
//   below / above:       dx = 0,  dscale = dy * (qmin|qmax - zero_point) * g,
//                        dzp = -dy * scale * g
// where fq(x) = (clamp(xq) - zero_point) * scale. Scalar only: training-time, not a hot path.
void f32_fake_quantize_learnable_grad(int64_t n, const float* x, const float* dy, float* dx,
                                      float* dscale, float* dzero_point,
                                      const LearnableGradParams& p);

}  // namespace tqx::kernels
