// Three uint8 planes to 3-byte pixels with SSSE3 vpshufb, for the AVX2 and AVX-512 quantize files
// (QuantizeKernels::u8_interleave3); internal linkage, so each includer's copy keeps its own flags.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/quantize.h"

namespace tqx::kernels {
namespace {

// 16 pixels per step: each 16-byte output vector is three vpshufb (one per plane, its bytes moved
// to their places and the others zeroed by 0x80 selectors) OR-ed together.
struct Interleave3Masks {
  alignas(16) int8_t m[3][3][16];  // [output vector][plane][byte]
  Interleave3Masks() {
    for (int o = 0; o < 3; ++o) {
      for (int c = 0; c < 3; ++c) {
        for (int k = 0; k < 16; ++k) {
          const int at = 16 * o + k;
          m[o][c][k] = static_cast<int8_t>(at % 3 == c ? at / 3 : 0x80);
        }
      }
    }
  }
};

void interleave3_ssse3(int64_t n, const uint8_t* p0, const uint8_t* p1, const uint8_t* p2, uint8_t* y) {
  static const Interleave3Masks masks;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16, y += 48) {
    const __m128i v[3] = {_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0 + i)),
                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1 + i)),
                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p2 + i))};
    for (int o = 0; o < 3; ++o) {
      __m128i out = _mm_setzero_si128();
      for (int c = 0; c < 3; ++c) {
        out = _mm_or_si128(out, _mm_shuffle_epi8(v[c], _mm_load_si128(reinterpret_cast<const __m128i*>(masks.m[o][c]))));
      }
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 16 * o), out);
    }
  }
  quantize_kernels_scalar().u8_interleave3(n - i, p0 + i, p1 + i, p2 + i, y);
}

}  // namespace
}  // namespace tqx::kernels
