// Scalar LSQ gradient terms (the evaluation order mirrors PyTorch's so the terms are bit-equal)
// and the dispatch ladder of the family.
#include "kernels/fake_quantize_grad.h"

#include <algorithm>
#include <cmath>

namespace tqx::kernels {
namespace {

void fake_quantize_learnable_grad_scalar(int64_t n, const float* x, const float* dy, float* dx,
                                         float* dscale, float* dzero_point,
                                         const LearnableGradParams& p) {
  const float below = static_cast<float>(p.qmin - p.zero_point);
  const float above = static_cast<float>(p.qmax - p.zero_point);
  const float zp = static_cast<float>(p.zero_point);
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::nearbyint(zp + x[i] * p.inv_scale);
    const bool inside = v >= static_cast<float>(p.qmin) && v <= static_cast<float>(p.qmax);
    dx[i] = inside ? dy[i] : dy[i] * 0.0f;
    if (inside) {
      const float fq = static_cast<float>(static_cast<int64_t>(v) - p.zero_point) * p.scale;
      dzero_point[i] = 0.0f;
      dscale[i] = dy[i] * (fq - x[i]) * p.inv_scale * p.grad_factor;
    } else {
      dzero_point[i] = dy[i] * (-1.0f) * p.scale * p.grad_factor;
      dscale[i] = (v < static_cast<float>(p.qmin) ? dy[i] * below : dy[i] * above) * p.grad_factor;
    }
  }
}

const FakeQuantizeGradKernels kScalar = {Isa::kScalar, fake_quantize_learnable_grad_scalar};

}  // namespace

const FakeQuantizeGradKernels& fake_quantize_grad_kernels_scalar() { return kScalar; }

const FakeQuantizeGradKernels& fake_quantize_grad_kernels_for(Isa isa) {
  if (isa >= Isa::kAVX512) {
    if (const FakeQuantizeGradKernels* k = fake_quantize_grad_kernels_avx512()) return *k;
  }
  if (isa >= Isa::kAVX2) {
    if (const FakeQuantizeGradKernels* k = fake_quantize_grad_kernels_avx2()) return *k;
  }
  return fake_quantize_grad_kernels_scalar();
}

const FakeQuantizeGradKernels& fake_quantize_grad_kernels() {
  return fake_quantize_grad_kernels_for(active_isa());
}

}  // namespace tqx::kernels
