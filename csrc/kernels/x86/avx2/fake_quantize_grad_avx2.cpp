// AVX2 LSQ gradient terms; bit-exact with the reference in fake_quantize_grad.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/fake_quantize_grad.h"

namespace tqx::kernels {
namespace {

// The reference's fq uses float(int64(xq) - zero_point); in float32, xq - float(zero_point) is
// the same value only when the zero point is exact in float32 (|zp| <= 2^24, every 8/16-bit range).
constexpr int64_t kExactFloatInt = int64_t{1} << 24;

void fake_quantize_learnable_grad_avx2(int64_t n, const float* x, const float* dy, float* dx,
                                       float* dscale, float* dzero_point,
                                       const LearnableGradParams& p) {
  const auto& reference = fake_quantize_grad_kernels_scalar();
  if (p.zero_point > kExactFloatInt || p.zero_point < -kExactFloatInt) {
    reference.f32_fake_quantize_learnable_grad(n, x, dy, dx, dscale, dzero_point, p);
    return;
  }
  const __m256 inv = _mm256_set1_ps(p.inv_scale);
  const __m256 scale = _mm256_set1_ps(p.scale);
  const __m256 gf = _mm256_set1_ps(p.grad_factor);
  const __m256 zp = _mm256_set1_ps(static_cast<float>(p.zero_point));
  const __m256 qmin = _mm256_set1_ps(static_cast<float>(p.qmin));
  const __m256 qmax = _mm256_set1_ps(static_cast<float>(p.qmax));
  const __m256 below = _mm256_set1_ps(static_cast<float>(p.qmin - p.zero_point));
  const __m256 above = _mm256_set1_ps(static_cast<float>(p.qmax - p.zero_point));
  const __m256 zero = _mm256_setzero_ps();
  const __m256 minus_one = _mm256_set1_ps(-1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    const __m256 g = _mm256_loadu_ps(dy + i);
    // Note [Rounding]: round half to even, as nearbyint.
    const __m256 v = _mm256_round_ps(_mm256_add_ps(zp, _mm256_mul_ps(xv, inv)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // Ordered compares: NaN is outside and, as in the reference, not below (so it takes `above`).
    const __m256 inside =
        _mm256_and_ps(_mm256_cmp_ps(v, qmin, _CMP_GE_OQ), _mm256_cmp_ps(v, qmax, _CMP_LE_OQ));
    const __m256 low = _mm256_cmp_ps(v, qmin, _CMP_LT_OQ);
    // dy * 0 (not 0) outside: -0 for negative dy and NaN for non-finite dy, as the reference.
    _mm256_storeu_ps(dx + i, _mm256_blendv_ps(_mm256_mul_ps(g, zero), g, inside));
    const __m256 fq = _mm256_mul_ps(_mm256_sub_ps(v, zp), scale);
    const __m256 ds_in = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(g, _mm256_sub_ps(fq, xv)), inv), gf);
    const __m256 ds_out =
        _mm256_mul_ps(_mm256_blendv_ps(_mm256_mul_ps(g, above), _mm256_mul_ps(g, below), low), gf);
    _mm256_storeu_ps(dscale + i, _mm256_blendv_ps(ds_out, ds_in, inside));
    // g * -1 rather than a sign flip: a NaN gradient keeps its bits, as in the reference.
    const __m256 dz_out = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(g, minus_one), scale), gf);
    _mm256_storeu_ps(dzero_point + i, _mm256_blendv_ps(dz_out, zero, inside));
  }
  // Fewer than 8 left: the reference (bit-equal by construction).
  reference.f32_fake_quantize_learnable_grad(n - i, x + i, dy + i, dx + i, dscale + i,
                                             dzero_point + i, p);
}

const FakeQuantizeGradKernels kAvx2 = {Isa::kAVX2, fake_quantize_learnable_grad_avx2};

}  // namespace

const FakeQuantizeGradKernels* fake_quantize_grad_kernels_avx2() { return &kAvx2; }

}  // namespace tqx::kernels
