// AVX2 variants of the quantize family; bit-exact with quantize_scalar.cpp.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/quantize.h"
#include "kernels/x86/avx2/affine_avx2.h"
#include "kernels/x86/interleave3.h"

namespace tqx::kernels {
namespace {

// Packs 32 int32 lanes (already inside the target range) to 32 bytes in order.
template <typename Q>
void store32(Q* y, __m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i bytes = std::is_same<Q, uint8_t>::value ? _mm256_packus_epi16(ab, cd)
                                                       : _mm256_packs_epi16(ab, cd);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), _mm256_permutevar8x32_epi32(bytes, order));
}

// Packs 16 int32 lanes to 16 int16 in order.
void store16(int16_t* y, __m256i a, __m256i b) {
  const __m256i ab = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), ab);
}

template <typename Q>
void quantize_block(const float* x, Q* y, const AffineAvx2& c) {
  const __m256i q0 = c.quantize(_mm256_loadu_ps(x));
  const __m256i q1 = c.quantize(_mm256_loadu_ps(x + 8));
  const __m256i q2 = c.quantize(_mm256_loadu_ps(x + 16));
  const __m256i q3 = c.quantize(_mm256_loadu_ps(x + 24));
  if constexpr (std::is_same<Q, int16_t>::value) {
    store16(y, q0, q1);
    store16(y + 16, q2, q3);
  } else {
    store32<Q>(y, q0, q1, q2, q3);
  }
}

// Blocks of 32 elements; the tail goes through a zero-padded copy of itself.
template <typename Q>
void quantize_avx2(int64_t n, const float* x, Q* y, const AffineParams& p) {
  const AffineAvx2 c(p);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) quantize_block<Q>(x + i, y + i, c);
  if (i < n) {
    alignas(32) float xt[32] = {};
    alignas(32) Q yt[32];
    std::memcpy(xt, x + i, (n - i) * sizeof(float));
    quantize_block<Q>(xt, yt, c);
    std::memcpy(y + i, yt, (n - i) * sizeof(Q));
  }
}

template <typename Q>
void requantize_avx2(int64_t n, const int32_t* acc, Q* y, const AffineParams& p) {
  alignas(32) float buf[32];
  for (int64_t i = 0; i < n; i += 32) {
    const int64_t len = (n - i < 32) ? n - i : 32;
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i + j));
      _mm256_store_ps(buf + j, _mm256_cvtepi32_ps(a));
    }
    // Fewer than 8 left: the same int -> float conversion (round to nearest even) one by one.
    for (; j < len; ++j) buf[j] = static_cast<float>(acc[i + j]);
    quantize_avx2<Q>(len, buf, y + i, p);
  }
}

template <typename Q>
__m256i load8(const Q* q);
template <>
__m256i load8<uint8_t>(const uint8_t* q) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
}
template <>
__m256i load8<int8_t>(const int8_t* q) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
}
template <>
__m256i load8<int16_t>(const int16_t* q) {
  return _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
}
template <>
__m256i load8<int32_t>(const int32_t* q) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
}

template <typename Q>
void dequantize_avx2(int64_t n, const Q* q, float* y, const AffineParams& p) {
  const __m256 zp = _mm256_set1_ps(static_cast<float>(p.zero_point));
  const __m256 scale = _mm256_set1_ps(p.scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_cvtepi32_ps(load8<Q>(q + i));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_sub_ps(a, zp), scale));
  }
  if (i < n) {
    Q qt[8] = {};
    alignas(32) float yt[8];
    std::memcpy(qt, q + i, (n - i) * sizeof(Q));
    const __m256 a = _mm256_cvtepi32_ps(load8<Q>(qt));
    _mm256_store_ps(yt, _mm256_mul_ps(_mm256_sub_ps(a, zp), scale));
    std::memcpy(y + i, yt, (n - i) * sizeof(float));
  }
}

// Byte i of kSpreadBits[b] is bit i of b: turns a movemask into eight 0/1 mask bytes.
struct SpreadBits {
  uint64_t v[256];
  constexpr SpreadBits() : v() {
    for (int b = 0; b < 256; ++b) {
      uint64_t r = 0;
      for (int i = 0; i < 8; ++i) r |= static_cast<uint64_t>((b >> i) & 1) << (8 * i);
      v[b] = r;
    }
  }
};
constexpr SpreadBits kSpreadBits;

void fake_quantize_block(const float* x, float* y, uint8_t* mask, const AffineParams& p) {
  const __m256 inv = _mm256_set1_ps(p.inv_scale);
  const __m256 scale = _mm256_set1_ps(p.scale);
  const __m256 zp = _mm256_set1_ps(static_cast<float>(p.zero_point));
  const __m256 qmin = _mm256_set1_ps(static_cast<float>(p.qmin));
  const __m256 qmax = _mm256_set1_ps(static_cast<float>(p.qmax));
  const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), inv);
  const __m256 t = _mm256_add_ps(zp, _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m256 clamped = _mm256_min_ps(_mm256_max_ps(t, qmin), qmax);
  _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_sub_ps(clamped, zp), scale));
  if (mask != nullptr) {
    // Ordered compares: NaN is outside the range.
    const int bits = _mm256_movemask_ps(
        _mm256_and_ps(_mm256_cmp_ps(t, qmin, _CMP_GE_OQ), _mm256_cmp_ps(t, qmax, _CMP_LE_OQ)));
    std::memcpy(mask, &kSpreadBits.v[bits], 8);
  }
}

void fake_quantize_avx2(int64_t n, const float* x, float* y, uint8_t* mask, const AffineParams& p) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) fake_quantize_block(x + i, y + i, mask ? mask + i : nullptr, p);
  if (i < n) {
    alignas(32) float xt[8] = {};
    alignas(32) float yt[8];
    uint8_t mt[8];
    std::memcpy(xt, x + i, (n - i) * sizeof(float));
    fake_quantize_block(xt, yt, mt, p);
    std::memcpy(y + i, yt, (n - i) * sizeof(float));
    if (mask != nullptr) std::memcpy(mask + i, mt, n - i);
  }
}

void quantize_f32_s32_avx2(int64_t n, const float* x, int32_t* y, const AffineParams& p) {
  // 32-bit targets need PyTorch's float32 zero-point addition; the reference does that.
  quantize_kernels_scalar().f32_s32_quantize(n, x, y, p);
}

void dequantize_s32_avx2(int64_t n, const int32_t* q, float* y, const AffineParams& p) {
  // q - zero_point may not fit in 32 bits and float(q) may be inexact: the reference does it in int64.
  quantize_kernels_scalar().s32_f32_dequantize(n, q, y, p);
}

const QuantizeKernels kAvx2 = {
    Isa::kAVX2,
    quantize_avx2<uint8_t>,
    quantize_avx2<int8_t>,
    quantize_avx2<int16_t>,
    quantize_f32_s32_avx2,
    dequantize_avx2<uint8_t>,
    dequantize_avx2<int8_t>,
    dequantize_avx2<int16_t>,
    dequantize_s32_avx2,
    requantize_avx2<uint8_t>,
    requantize_avx2<int8_t>,
    fake_quantize_avx2,
    interleave3_ssse3,
};

}  // namespace

const QuantizeKernels* quantize_kernels_avx2() { return &kAvx2; }

}  // namespace tqx::kernels
