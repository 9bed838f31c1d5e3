// AVX2 microkernels of the int8 convolution. AVX2 has no exact uint8 x int8 dot product:
// vpmaddubsw saturates its int16 pair sums (255 * 127 * 2 > 32767), which is why PyTorch's x86
// engines reduce the activation or weight range on such CPUs. We keep the products exact by
// multiplying in int16 instead: the driver widens the A rows (activations) to int16 once per row
// block (widen_rows), each k-group of B is sign-extended as it is loaded, and vpmaddwd adds two
// exact products into each int32 lane. Per 16 multiply-adds that is one vpmaddwd and one vpaddd,
// half the multiplies of the split-byte vpmaddubsw emulation this replaces (which spent two
// vpmaddubsw and two vpmaddwd per 32 products).
//
// Lane layout: one k-group of B for 4 columns is 16 bytes [4 columns][4 k]; sign-extended it is
// one ymm of int16 whose 32-bit lanes hold the pairs (k0, k1) and (k2, k3) of columns 0, 0, 1, 1,
// 2, 2, 3, 3. The row's four int16 activations of that k-group, broadcast as one 64-bit value,
// line up with it, so each lane accumulates half of a column's sum; one vphaddd per 8 columns
// adds the halves at the end.
#include <algorithm>

#include "kernels/x86/gemm_ymm.h"

namespace tqx::kernels {
namespace {

constexpr int kRows = 6;  // 6 rows x 2 accumulators + 2 B + 1 A = 15 of the 16 ymm registers

void widen_rows(int64_t rows, int64_t k, const uint8_t* a, int64_t lda, int16_t* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* src = a + r * lda;
    int16_t* dst = out + r * k;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_cvtepu8_epi16(v));
    }
    for (; i < k; ++i) dst[i] = src[i];
  }
}

// acc += the pair products of a and b, the add in acc's register (gemm_ymm.h says why asm).
inline void madd_into(__m256i& acc, __m256i a, __m256i b) {
  const __m256i p = _mm256_madd_epi16(a, b);
  __asm__("vpaddd %1, %0, %0" : "+x"(acc) : "x"(p));
}

inline __m256i broadcast_k4(const int16_t* p) {
  int64_t v;
  std::memcpy(&v, p, sizeof(v));
  return _mm256_set1_epi64x(v);
}

// R rows x up to 16 columns, in two passes of 8 columns over the same A rows.
template <int R>
void tile_rows(int64_t cols, int64_t k_padded, const int16_t* a, int64_t lda, const int8_t* b, const TileEpilogue& e,
               uint8_t* y, int64_t ldy) {
  const int64_t k4 = k_padded / 4;
  const __m256i xz = _mm256_set1_epi32(e.input_zero_point);
  for (int64_t h = 0; h < 2 && h * 8 < cols; ++h) {
    __m256i acc[R][2];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    const int8_t* bh = b + h * 32;
    for (int64_t k = 0; k < k4; ++k) {
      const __m256i b0 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bh + k * 64)));
      const __m256i b1 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bh + k * 64 + 16)));
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m256i av = broadcast_k4(a + i * lda + k * 4);
        madd_into(acc[i][0], av, b0);
        madd_into(acc[i][1], av, b1);
      }
    }
    const int64_t n = std::min<int64_t>(8, cols - h * 8);
    const __m256i zcs =
        _mm256_mullo_epi32(xz, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.col_sums + h * 8)));
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      // [c0 c1 c4 c5 | c2 c3 c6 c7] -> c0..c7
      const __m256i sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][0], acc[i][1]), 0xD8);
      alignas(16) uint8_t res_tmp[16] = {};
      const uint8_t* res = nullptr;
      if (e.residual != nullptr) {
        res = e.residual + i * ldy + h * 8;
        if (n < 8) {
          std::memcpy(res_tmp, res, static_cast<size_t>(n));
          res = res_tmp;
        }
      }
      const __m256i q = ymm::requantize8(sums, zcs, e.multiplier + h * 8, e.bias + h * 8, res, e);
      const __m128i bytes = ymm::pack16(q, q);
      uint8_t* out = y + i * ldy + h * 8;
      if (n == 8) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out), bytes);
      } else {
        alignas(16) uint8_t tmp[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
        std::memcpy(out, tmp, static_cast<size_t>(n));
      }
    }
  }
}

using TileImpl = void (*)(int64_t, int64_t, const int16_t*, int64_t, const int8_t*, const TileEpilogue&, uint8_t*,
                          int64_t);

template <int... Rs>
TileImpl pick(int64_t rows, std::integer_sequence<int, Rs...>) {
  TileImpl out = nullptr;
  ((out = rows == Rs + 1 ? &tile_rows<Rs + 1> : out), ...);
  return out;
}

// a: int16 rows from widen_rows, lda in bytes.
void gemm_tile(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
               int64_t /*b_stride*/, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  pick(rows, std::make_integer_sequence<int, kRows>())(cols, k_padded, reinterpret_cast<const int16_t*>(a),
                                                        lda / static_cast<int64_t>(sizeof(int16_t)), b, e, y, ldy);
}

struct DotAvx2 {
  static __m256i dot_pairs(__m256i acc, __m256i x, __m256i w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
  }
};

GemmKernels make() {
  GemmKernels k{gemm_tile, 16, {0, kRows, 0, 0, 0}, 4, 1, nullptr, nullptr, ymm::depthwise_pixel<DotAvx2>};
  k.widen_a = widen_rows;
  return k;
}

const GemmKernels kKernels = make();

}  // namespace

const GemmKernels* gemm_kernels_avx2() { return &kKernels; }

}  // namespace tqx::kernels
