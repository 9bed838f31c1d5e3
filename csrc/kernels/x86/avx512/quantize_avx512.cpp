// AVX-512 (F/BW/VL/DQ) variants of the quantize family; bit-exact with quantize_scalar.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/quantize.h"
#include "kernels/x86/avx512/affine_avx512.h"
#include "kernels/x86/interleave3.h"

namespace tqx::kernels {
namespace {

inline __mmask16 tail_mask(int64_t remaining) {
  return static_cast<__mmask16>((1u << remaining) - 1u);
}

template <typename Q>
void store_q(Q* y, __m512i q, __mmask16 m);
template <>
void store_q<uint8_t>(uint8_t* y, __m512i q, __mmask16 m) {
  _mm512_mask_cvtepi32_storeu_epi8(y, m, q);
}
template <>
void store_q<int8_t>(int8_t* y, __m512i q, __mmask16 m) {
  _mm512_mask_cvtepi32_storeu_epi8(y, m, q);
}
template <>
void store_q<int16_t>(int16_t* y, __m512i q, __mmask16 m) {
  _mm512_mask_cvtepi32_storeu_epi16(y, m, q);
}

template <typename Q>
__m512i load_q(const Q* q, __mmask16 m);
template <>
__m512i load_q<uint8_t>(const uint8_t* q, __mmask16 m) {
  return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, q));
}
template <>
__m512i load_q<int8_t>(const int8_t* q, __mmask16 m) {
  return _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, q));
}
template <>
__m512i load_q<int16_t>(const int16_t* q, __mmask16 m) {
  return _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(m, q));
}
template <>
__m512i load_q<int32_t>(const int32_t* q, __mmask16 m) {
  return _mm512_maskz_loadu_epi32(m, q);
}

template <typename Q>
void quantize_avx512(int64_t n, const float* x, Q* y, const AffineParams& p) {
  const AffineAvx512 c(p);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i q0 = c.quantize(_mm512_loadu_ps(x + i));
    const __m512i q1 = c.quantize(_mm512_loadu_ps(x + i + 16));
    const __m512i q2 = c.quantize(_mm512_loadu_ps(x + i + 32));
    const __m512i q3 = c.quantize(_mm512_loadu_ps(x + i + 48));
    store_q<Q>(y + i, q0, 0xFFFF);
    store_q<Q>(y + i + 16, q1, 0xFFFF);
    store_q<Q>(y + i + 32, q2, 0xFFFF);
    store_q<Q>(y + i + 48, q3, 0xFFFF);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = (n - i >= 16) ? __mmask16(0xFFFF) : tail_mask(n - i);
    store_q<Q>(y + i, c.quantize(_mm512_maskz_loadu_ps(m, x + i)), m);
  }
}

template <typename Q>
void requantize_avx512(int64_t n, const int32_t* acc, Q* y, const AffineParams& p) {
  const AffineAvx512 c(p);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = (n - i >= 16) ? __mmask16(0xFFFF) : tail_mask(n - i);
    const __m512 a = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, acc + i));
    store_q<Q>(y + i, c.quantize(a), m);
  }
}

template <typename Q>
void dequantize_avx512(int64_t n, const Q* q, float* y, const AffineParams& p) {
  const __m512 zp = _mm512_set1_ps(static_cast<float>(p.zero_point));
  const __m512 scale = _mm512_set1_ps(p.scale);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_cvtepi32_ps(load_q<Q>(q + i, 0xFFFF));
    const __m512 b = _mm512_cvtepi32_ps(load_q<Q>(q + i + 16, 0xFFFF));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_sub_ps(a, zp), scale));
    _mm512_storeu_ps(y + i + 16, _mm512_mul_ps(_mm512_sub_ps(b, zp), scale));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = (n - i >= 16) ? __mmask16(0xFFFF) : tail_mask(n - i);
    const __m512 a = _mm512_cvtepi32_ps(load_q<Q>(q + i, m));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_sub_ps(a, zp), scale));
  }
}

void fake_quantize_avx512(int64_t n, const float* x, float* y, uint8_t* mask, const AffineParams& p) {
  const __m512 inv = _mm512_set1_ps(p.inv_scale);
  const __m512 scale = _mm512_set1_ps(p.scale);
  const __m512 zp = _mm512_set1_ps(static_cast<float>(p.zero_point));
  const __m512 qmin = _mm512_set1_ps(static_cast<float>(p.qmin));
  const __m512 qmax = _mm512_set1_ps(static_cast<float>(p.qmax));
  const __m128i ones = _mm_set1_epi8(1);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = (n - i >= 16) ? __mmask16(0xFFFF) : tail_mask(n - i);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv);
    const __m512 t = _mm512_add_ps(
        zp, _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    // Ordered compares: NaN is outside the range.
    const __mmask16 inside =
        _mm512_cmp_ps_mask(t, qmin, _CMP_GE_OQ) & _mm512_cmp_ps_mask(t, qmax, _CMP_LE_OQ);
    const __m512 clamped = _mm512_min_ps(_mm512_max_ps(t, qmin), qmax);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_sub_ps(clamped, zp), scale));
    if (mask != nullptr) _mm_mask_storeu_epi8(mask + i, m, _mm_maskz_mov_epi8(inside, ones));
  }
}

void quantize_f32_s32_avx512(int64_t n, const float* x, int32_t* y, const AffineParams& p) {
  // 32-bit targets need PyTorch's float32 zero-point addition; the reference does that.
  quantize_kernels_scalar().f32_s32_quantize(n, x, y, p);
}

void dequantize_s32_avx512(int64_t n, const int32_t* q, float* y, const AffineParams& p) {
  // q - zero_point may not fit in 32 bits and float(q) may be inexact: the reference does it in int64.
  quantize_kernels_scalar().s32_f32_dequantize(n, q, y, p);
}

const QuantizeKernels kAvx512 = {
    Isa::kAVX512,
    quantize_avx512<uint8_t>,
    quantize_avx512<int8_t>,
    quantize_avx512<int16_t>,
    quantize_f32_s32_avx512,
    dequantize_avx512<uint8_t>,
    dequantize_avx512<int8_t>,
    dequantize_avx512<int16_t>,
    dequantize_s32_avx512,
    requantize_avx512<uint8_t>,
    requantize_avx512<int8_t>,
    fake_quantize_avx512,
    interleave3_ssse3,
};

}  // namespace

const QuantizeKernels* quantize_kernels_avx512() { return &kAvx512; }

}  // namespace tqx::kernels
