// AVX-512 (F/BW/VL/DQ) LSQ gradient terms; bit-exact with the reference in fake_quantize_grad.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/fake_quantize_grad.h"

namespace tqx::kernels {
namespace {

// The reference's fq uses float(int64(xq) - zero_point); in float32, xq - float(zero_point) is
// the same value only when the zero point is exact in float32 (|zp| <= 2^24, every 8/16-bit range).
constexpr int64_t kExactFloatInt = int64_t{1} << 24;

void fake_quantize_learnable_grad_avx512(int64_t n, const float* x, const float* dy, float* dx,
                                         float* dscale, float* dzero_point,
                                         const LearnableGradParams& p) {
  if (p.zero_point > kExactFloatInt || p.zero_point < -kExactFloatInt) {
    fake_quantize_grad_kernels_scalar().f32_fake_quantize_learnable_grad(n, x, dy, dx, dscale,
                                                                        dzero_point, p);
    return;
  }
  const __m512 inv = _mm512_set1_ps(p.inv_scale);
  const __m512 scale = _mm512_set1_ps(p.scale);
  const __m512 gf = _mm512_set1_ps(p.grad_factor);
  const __m512 zp = _mm512_set1_ps(static_cast<float>(p.zero_point));
  const __m512 qmin = _mm512_set1_ps(static_cast<float>(p.qmin));
  const __m512 qmax = _mm512_set1_ps(static_cast<float>(p.qmax));
  const __m512 below = _mm512_set1_ps(static_cast<float>(p.qmin - p.zero_point));
  const __m512 above = _mm512_set1_ps(static_cast<float>(p.qmax - p.zero_point));
  const __m512 zero = _mm512_setzero_ps();
  const __m512 minus_one = _mm512_set1_ps(-1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m =
        n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 g = _mm512_maskz_loadu_ps(m, dy + i);
    // Note [Rounding]: round half to even, as nearbyint.
    const __m512 v = _mm512_roundscale_ps(_mm512_add_ps(zp, _mm512_mul_ps(xv, inv)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // Ordered compares: NaN is outside and, as in the reference, not below (so it takes `above`).
    const __mmask16 inside =
        _mm512_cmp_ps_mask(v, qmin, _CMP_GE_OQ) & _mm512_cmp_ps_mask(v, qmax, _CMP_LE_OQ);
    const __mmask16 low = _mm512_cmp_ps_mask(v, qmin, _CMP_LT_OQ);
    // dy * 0 (not 0) outside: -0 for negative dy and NaN for non-finite dy, as the reference.
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mask_blend_ps(inside, _mm512_mul_ps(g, zero), g));
    const __m512 fq = _mm512_mul_ps(_mm512_sub_ps(v, zp), scale);
    const __m512 ds_in = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(g, _mm512_sub_ps(fq, xv)), inv), gf);
    const __m512 ds_out =
        _mm512_mul_ps(_mm512_mask_blend_ps(low, _mm512_mul_ps(g, above), _mm512_mul_ps(g, below)), gf);
    _mm512_mask_storeu_ps(dscale + i, m, _mm512_mask_blend_ps(inside, ds_out, ds_in));
    // g * -1 rather than a sign flip: a NaN gradient keeps its bits, as in the reference.
    const __m512 dz_out = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(g, minus_one), scale), gf);
    _mm512_mask_storeu_ps(dzero_point + i, m, _mm512_mask_blend_ps(inside, dz_out, zero));
  }
}

const FakeQuantizeGradKernels kAvx512 = {Isa::kAVX512, fake_quantize_learnable_grad_avx512};

}  // namespace

const FakeQuantizeGradKernels* fake_quantize_grad_kernels_avx512() { return &kAvx512; }

}  // namespace tqx::kernels
