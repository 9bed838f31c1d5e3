// The 256-bit microkernels of the int8 convolution, shared by the AVX2 and AVX-VNNI builds. Each
// including file (compiled with its own -m flags) supplies `Dot`: how four uint8 x int8 products
// are added into an int32 lane (vpdpbusd, or its exact AVX2 emulation) and the int16-pair step of
// the depthwise kernel. Layouts: Note [Packed weights] in kernels/conv.cpp.
//
// Dot::dot updates the accumulator in place through an asm operand ("+x"): with plain intrinsics
// GCC 12 kept the tile's accumulator array on the stack as well (AVX-VNNI: two register copies and
// a 32-byte store per vpdpbusd; AVX2: seven of the eight accumulators loaded and stored every
// k-step), as it did in the AVX-512 VNNI tile (see dpbusd_in_place there).
#pragma once

#include <immintrin.h>

#include <cstring>
#include <utility>

#include "kernels/gemm.h"

namespace tqx::kernels::ymm {

inline __m256i broadcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return _mm256_set1_epi32(v);
}

// The float32 value of 8 columns before the clamp (Note [Rounding]): (acc - zcs) * mult + bias,
// plus (r - rz) * rmult where residual points at the 8 residual bytes (null: none).
inline __m256 requantize8_value(__m256i acc, __m256i zcs, __m256 mult, __m256 bias, const uint8_t* residual,
                                __m256i rz, __m256 rmult) {
  __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc, zcs)), mult), bias);
  if (residual != nullptr) {
    const __m256i r = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(residual)));
    v = _mm256_add_ps(v, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(r, rz)), rmult));
  }
  return v;
}

// The float epilogue of 8 columns (Note [Rounding]); r holds the 8 residual bytes or is unused.
inline __m256i requantize8(__m256i acc, __m256i zcs, const float* mult, const float* bias, const uint8_t* residual,
                           const TileEpilogue& e) {
  __m256 v = requantize8_value(acc, zcs, _mm256_loadu_ps(mult), _mm256_loadu_ps(bias), residual,
                               _mm256_set1_epi32(e.residual_zero_point), _mm256_set1_ps(e.residual_multiplier));
  // max(v, lo) returns lo for NaN, as the reference does.
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(e.lo)), _mm256_set1_ps(e.hi));
  return _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(e.output_zero_point));
}

// 16 int32 values in [0, 255] (two halves of 8) as 16 bytes in order.
inline __m128i pack16(__m256i h0, __m256i h1) {
  const __m256i p16 = _mm256_packus_epi32(h0, h1);  // [h0 0-3, h1 0-3 | h0 4-7, h1 4-7]
  const __m256i p8 = _mm256_packus_epi16(p16, p16);
  return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5)));
}

// Rows x (up to) 16 columns: one block, two 8-lane accumulators per row.
template <class Dot, int R>
void tile(int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b, const TileEpilogue& e,
          uint8_t* y, int64_t ldy) {  // one block: b_stride is not needed
  const int64_t k4 = k_padded / 4;
  __m256i acc[R][2];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  for (int64_t k = 0; k < k4; ++k) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + k * 64));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + k * 64 + 32));
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const typename Dot::A av = Dot::prepare(broadcast4(a + i * lda + k * 4));
      Dot::dot(acc[i][0], av, b0);
      Dot::dot(acc[i][1], av, b1);
    }
  }
  const __m256i xz = _mm256_set1_epi32(e.input_zero_point);
  const __m256i zcs0 = _mm256_mullo_epi32(xz, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.col_sums)));
  const __m256i zcs1 = _mm256_mullo_epi32(xz, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.col_sums + 8)));
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    alignas(16) uint8_t res_tmp[16] = {};
    const uint8_t* res = nullptr;
    if (e.residual != nullptr) {
      res = e.residual + i * ldy;
      if (cols < 16) {
        std::memcpy(res_tmp, res, static_cast<size_t>(cols));
        res = res_tmp;
      }
    }
    const __m256i q0 = requantize8(acc[i][0], zcs0, e.multiplier, e.bias, res, e);
    const __m256i q1 = requantize8(acc[i][1], zcs1, e.multiplier + 8, e.bias + 8, res ? res + 8 : nullptr, e);
    const __m128i bytes = pack16(q0, q1);
    if (cols >= 16) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i * ldy), bytes);
    } else {
      alignas(16) uint8_t tmp[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
      std::memcpy(y + i * ldy, tmp, static_cast<size_t>(cols));
    }
  }
}

using TileImpl = void (*)(int64_t, int64_t, const uint8_t*, int64_t, const int8_t*, const TileEpilogue&, uint8_t*,
                          int64_t);

template <class Dot, int... Rs>
TileImpl pick(int64_t rows, std::integer_sequence<int, Rs...>) {
  TileImpl out = nullptr;
  ((out = rows == Rs + 1 ? &tile<Dot, Rs + 1> : out), ...);
  return out;
}

template <class Dot>
void gemm_tile(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
               int64_t /*b_stride*/, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  pick<Dot>(rows, std::make_integer_sequence<int, Dot::kRows>())(cols, k_padded, a, lda, b, e, y, ldy);
}

inline __m256i load8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

template <class Dot>
void depthwise_pixel(int64_t taps, int64_t channels, const uint8_t* const* tap_ptrs, const int16_t* w,
                     const TileEpilogue& e, uint8_t* y) {
  const int64_t cp = (channels + 15) / 16 * 16;
  const __m256i xz = _mm256_set1_epi32(e.input_zero_point);
  for (int64_t c0 = 0; c0 < channels; c0 += 8) {
    const int64_t n = channels - c0;
    // Loads 8 channels of a tap; a partial last group goes through a zero-padded copy.
    auto load_tap = [&](int64_t t) -> __m256i {
      if (t >= taps) return _mm256_setzero_si256();
      if (tap_ptrs[t] == nullptr) return xz;
      if (n >= 8) return load8(tap_ptrs[t] + c0);
      alignas(16) uint8_t tmp[16] = {};
      std::memcpy(tmp, tap_ptrs[t] + c0, static_cast<size_t>(n));
      return load8(tmp);
    };
    __m256i acc = _mm256_setzero_si256();
    for (int64_t t = 0; t < taps; t += 2) {
      const __m256i pair = _mm256_or_si256(load_tap(t), _mm256_slli_epi32(load_tap(t + 1), 16));
      acc = Dot::dot_pairs(acc, pair, _mm256_load_si256(reinterpret_cast<const __m256i*>(w + ((t / 2) * cp + c0) * 2)));
    }
    const __m256i zcs = _mm256_mullo_epi32(xz, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.col_sums + c0)));
    alignas(16) uint8_t res_tmp[16] = {};
    const uint8_t* res = nullptr;
    if (e.residual != nullptr) {
      res = e.residual + c0;
      if (n < 8) {
        std::memcpy(res_tmp, res, static_cast<size_t>(n));
        res = res_tmp;
      }
    }
    const __m256i q = requantize8(acc, zcs, e.multiplier + c0, e.bias + c0, res, e);
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), pack16(q, q));
    std::memcpy(y + c0, tmp, static_cast<size_t>(n < 8 ? n : 8));
  }
}

template <class Dot>
GemmKernels make_kernels() {
  return GemmKernels{gemm_tile<Dot>, 16, {0, Dot::kRows, 0, 0, 0}, 4, 1, nullptr, nullptr, depthwise_pixel<Dot>};
}

}  // namespace tqx::kernels::ymm
