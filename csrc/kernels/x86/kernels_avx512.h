// AVX-512 pieces shared by the AVX-512 VNNI and AMX kernels (included only by files compiled with
// AVX-512 VNNI flags): the requantize epilogue and the depthwise pixel kernel.
#pragma once

#include <immintrin.h>

#include <algorithm>

#include "kernels/gemm.h"

namespace tqx::kernels::avx512 {

// The float epilogue of 16 columns (Note [Rounding]); returns int32 values in [qmin, qmax].
inline __m512i requantize16(__m512i acc, __m512i zcs, const float* mult, const float* bias, const uint8_t* residual,
                            __mmask16 mask, const TileEpilogue& e) {
  __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, zcs));
  v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_loadu_ps(mult)), _mm512_loadu_ps(bias));
  if (residual != nullptr) {
    const __m512i r = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, residual));
    const __m512 rv = _mm512_cvtepi32_ps(_mm512_sub_epi32(r, _mm512_set1_epi32(e.residual_zero_point)));
    v = _mm512_add_ps(v, _mm512_mul_ps(rv, _mm512_set1_ps(e.residual_multiplier)));
  }
  // max(v, lo) returns lo for NaN, as the reference does.
  v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(e.lo)), _mm512_set1_ps(e.hi));
  return _mm512_add_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(e.output_zero_point));
}

// 16 channels of one depthwise output pixel.
inline __m512i depthwise16(int64_t taps, int64_t cp, int64_t c0, __mmask16 mask, const uint8_t* const* tap_ptrs,
                           const int16_t* w, __m512i xz) {
  __m512i acc = _mm512_setzero_si512();
  for (int64_t t = 0; t < taps; t += 2) {
    const __m512i x0 = tap_ptrs[t] != nullptr ? _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, tap_ptrs[t] + c0)) : xz;
    __m512i x1 = _mm512_setzero_si512();
    if (t + 1 < taps) {
      x1 = tap_ptrs[t + 1] != nullptr ? _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, tap_ptrs[t + 1] + c0)) : xz;
    }
    const __m512i pair = _mm512_or_si512(x0, _mm512_slli_epi32(x1, 16));
    acc = _mm512_dpwssd_epi32(acc, pair, _mm512_load_si512(w + ((t / 2) * cp + c0) * 2));
  }
  return acc;
}

inline void depthwise_pixel(int64_t taps, int64_t channels, const uint8_t* const* tap_ptrs, const int16_t* w,
                            const TileEpilogue& e, uint8_t* y) {
  const int64_t cp = (channels + 15) / 16 * 16;
  const __m512i xz = _mm512_set1_epi32(e.input_zero_point);
  for (int64_t c0 = 0; c0 < channels; c0 += 16) {
    const int64_t n = channels - c0;
    const __mmask16 mask = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
    const __m512i acc = depthwise16(taps, cp, c0, mask, tap_ptrs, w, xz);
    const __m512i zcs = _mm512_mullo_epi32(xz, _mm512_loadu_si512(e.col_sums + c0));
    const uint8_t* res = e.residual != nullptr ? e.residual + c0 : nullptr;
    const __m512i q = requantize16(acc, zcs, e.multiplier + c0, e.bias + c0, res, mask, e);
    _mm512_mask_cvtepi32_storeu_epi8(y + c0, mask, q);
  }
}

// The int32 sums of 16 channels of one output pixel whose window lies inside the input: T taps at
// base + off[t], T known at compile time so the loads, pairs and vpdpwssd unroll without the
// per-tap checks of the border path. kFull: all 16 channels (a plain vpmovzxbd from memory).
template <int T, bool kFull>
inline __m512i depthwise_inside16(const uint8_t* base, const int64_t* off, const __m512i* wv, __mmask16 mask) {
  auto load = [&](int t) -> __m512i {
    if (t >= T) return _mm512_setzero_si512();
    if (kFull) return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base + off[t])));
    return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, base + off[t]));
  };
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
#pragma GCC unroll 16
  for (int t = 0; t < T; t += 4) {
    acc0 = _mm512_dpwssd_epi32(acc0, _mm512_or_si512(load(t), _mm512_slli_epi32(load(t + 1), 16)), wv[t / 2]);
    if (t + 2 < T) {
      acc1 = _mm512_dpwssd_epi32(acc1, _mm512_or_si512(load(t + 2), _mm512_slli_epi32(load(t + 3), 16)), wv[t / 2 + 1]);
    }
  }
  return _mm512_add_epi32(acc0, acc1);
}

// Channel block outer, pixels inner: the block's weights, column sums and epilogue vectors stay in
// registers while the pixels stream by; interior pixels take fixed tap offsets (and, for T > 0
// taps, the unrolled depthwise_inside16), border pixels the checked path (padding contributes the
// input zero point, as in the reference). Channel blocks from c_begin (a multiple of 16).
template <int T>
inline void depthwise_rows_taps(const DepthwiseShape& s, const uint8_t* x, const int16_t* w, const TileEpilogue& e,
                                uint8_t* y, int64_t m_begin, int64_t m_end, int64_t c_begin = 0) {
  constexpr int kMaxTaps = kDepthwiseRowsMaxTaps;
  const int64_t taps = T > 0 ? T : s.kernel_h * s.kernel_w, c = s.channels, cp = (c + 15) / 16 * 16;
  const DepthwiseGeometry geo = depthwise_geometry(s);
  const int64_t *const off = geo.off, *const dh = geo.dh, *const dw = geo.dw;
  const int64_t inner_lo = geo.inner_lo, inner_hi = geo.inner_hi;  // columns with windows inside horizontally
  const __m512i xz = _mm512_set1_epi32(e.input_zero_point);
  for (int64_t c0 = c_begin; c0 < c; c0 += 16) {
    const int64_t left = c - c0;
    const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
    __m512i wv[(kMaxTaps + 1) / 2];
    for (int64_t p = 0; p < (taps + 1) / 2; ++p) wv[p] = _mm512_load_si512(w + (p * cp + c0) * 2);
    const __m512i zcs = _mm512_mullo_epi32(xz, _mm512_loadu_si512(e.col_sums + c0));
    const __m512 mult = _mm512_loadu_ps(e.multiplier + c0), bias = _mm512_loadu_ps(e.bias + c0);
    const __m512 lo = _mm512_set1_ps(e.lo), hi = _mm512_set1_ps(e.hi), rmult = _mm512_set1_ps(e.residual_multiplier);
    const __m512i yz = _mm512_set1_epi32(e.output_zero_point), rz = _mm512_set1_epi32(e.residual_zero_point);
    const uint8_t* const residual = e.residual;
    // The epilogue with the block's vectors in registers (y's stores cannot alias them).
    auto finish = [&](__m512i acc, int64_t m) {
      __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, zcs)), mult), bias);
      if (residual != nullptr) {
        const __m512i r = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, residual + m * c + c0));
        v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(r, rz)), rmult));
      }
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      _mm512_mask_cvtepi32_storeu_epi8(y + m * c + c0, mask, _mm512_add_epi32(_mm512_cvtps_epi32(v), yz));
    };
    int64_t m = m_begin;
    while (m < m_end) {
      const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
      const int64_t ih0 = oh * s.stride_h - s.pad_h, iw0 = ow * s.stride_w - s.pad_w;
      const bool rows_inside = ih0 >= 0 && ih0 + (s.kernel_h - 1) * s.dilation_h < s.in_h;
      const uint8_t* base = x + ((n * s.in_h + ih0) * s.in_w + iw0) * c + c0;
      if (T > 0 && rows_inside && ow >= inner_lo && ow < inner_hi) {
        // A run of pixels whose windows lie inside the input: no checks per tap.
        const int64_t count = std::min(inner_hi - ow, std::min(m_end, m - ow + s.out_w) - m);
        const int64_t step = s.stride_w * c;
        for (int64_t j = 0; j < count; ++j) {
          finish(left >= 16 ? depthwise_inside16<T, true>(base + j * step, off, wv, mask)
                            : depthwise_inside16<T, false>(base + j * step, off, wv, mask),
                 m + j);
        }
        m += count;
        continue;
      }
      const bool inside = rows_inside && iw0 >= 0 && iw0 + (s.kernel_w - 1) * s.dilation_w < s.in_w;
      auto load = [&](int64_t t) -> __m512i {
        if (t >= taps) return _mm512_setzero_si512();
        if (!inside) {
          const int64_t ih = ih0 + dh[t], iw = iw0 + dw[t];
          if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) return xz;
        }
        return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, base + off[t]));
      };
      // Two independent chains halve the dependent vpdpwssd latency per pixel.
      __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
      for (int64_t t = 0; t < taps; t += 4) {
        acc0 = _mm512_dpwssd_epi32(acc0, _mm512_or_si512(load(t), _mm512_slli_epi32(load(t + 1), 16)), wv[t / 2]);
        if (t + 2 < taps) {
          acc1 = _mm512_dpwssd_epi32(acc1, _mm512_or_si512(load(t + 2), _mm512_slli_epi32(load(t + 3), 16)),
                                     wv[t / 2 + 1]);
        }
      }
      finish(_mm512_add_epi32(acc0, acc1), m);
      ++m;
    }
  }
}

// Kernels of up to kDepthwiseRowsMaxTaps taps (the driver sends larger ones to depthwise_pixel);
// 3x3 and 5x5 get the unrolled interior.
inline bool depthwise_rows(const DepthwiseShape& s, const uint8_t* x, const DepthwiseWeights& dw,
                           const TileEpilogue& e, uint8_t* y, int64_t m_begin, int64_t m_end) {
  const int16_t* const w = dw.pairs;
  const int64_t taps = s.kernel_h * s.kernel_w;
  if (taps == 9) {
    depthwise_rows_taps<9>(s, x, w, e, y, m_begin, m_end);
  } else if (taps == 25) {
    depthwise_rows_taps<25>(s, x, w, e, y, m_begin, m_end);
  } else {
    depthwise_rows_taps<0>(s, x, w, e, y, m_begin, m_end);
  }
  return true;
}

}  // namespace tqx::kernels::avx512
