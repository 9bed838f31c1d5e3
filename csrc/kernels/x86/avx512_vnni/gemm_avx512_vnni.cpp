// AVX-512 VNNI microkernels of the int8 convolution: a register tile of up to 12 rows x 64
// columns accumulated with vpdpbusd (64 multiply-adds per instruction), over im2col rows or through
// an indirection buffer, and the depthwise kernels on vpdpwssd. Layouts and arithmetic:
// Note [Packed weights] in kernels/conv.cpp.
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "kernels/gemm.h"
#include "kernels/x86/kernels_avx512.h"

namespace tqx::kernels {
namespace {

using avx512::requantize16;

inline __m512i broadcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return _mm512_set1_epi32(v);
}

// acc += a . b (vpdpbusd) updating acc in its register. With _mm512_dpbusd_epi32 GCC 12 kept the
// tile's accumulator array in memory as well: every vpdpbusd came with two register copies and a
// 64-byte store to the stack, which bound the loop on cores that issue more than one vpdpbusd per
// cycle (measured on an AMD EPYC: ~100 GMAC/s). The asm operand ties acc to one register.
inline void dpbusd_in_place(__m512i& acc, __m512i a, __m512i b) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
}

// The accumulators start at -input_zero_point * column sum (Note [Packed weights]), so the sum of
// x * w they reach is already the reference's sum of (x - x_zp) * w (int32, wrapping alike).
template <int R, int NB>
inline void init_acc(__m512i (&acc)[R][NB], const TileEpilogue& e) {
  const __m512i xz = _mm512_set1_epi32(e.input_zero_point);
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) {
    const __m512i start =
        _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_mullo_epi32(xz, _mm512_loadu_si512(e.col_sums + 16 * j)));
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) acc[i][j] = start;
  }
}

// k4 k-groups of rows a[0..R) (4 bytes each) against B's k-groups from b (block j at b + j * bstride).
template <int R, int NB>
inline void accumulate(__m512i (&acc)[R][NB], const uint8_t* const (&a)[R], int64_t k4, const int8_t* b,
                       int64_t bstride) {
  for (int64_t k = 0; k < k4; ++k) {
    __m512i bv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) bv[j] = _mm512_load_si512(b + j * bstride + k * 64);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512i av = broadcast4(a[i] + k * 4);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) dpbusd_in_place(acc[i][j], av, bv[j]);
    }
  }
}

template <int R, int NB>
inline void store(const __m512i (&acc)[R][NB], int64_t cols, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  const __m512i zero = _mm512_setzero_si512();
  if constexpr (NB == 4) {
    if (cols == 64) {
      // Whole rows of 64 columns: the four vectors (each in [qmin, qmax], so the saturating packs
      // are exact) packed to bytes and put back in column order with one vpermd, one store per row.
      const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        const uint8_t* res = e.residual != nullptr ? e.residual + i * ldy : nullptr;
        __m512i q[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          q[j] = requantize16(acc[i][j], zero, e.multiplier + 16 * j, e.bias + 16 * j,
                              res != nullptr ? res + 16 * j : nullptr, 0xFFFF, e);
        }
        const __m512i bytes = _mm512_packus_epi16(_mm512_packs_epi32(q[0], q[1]), _mm512_packs_epi32(q[2], q[3]));
        _mm512_storeu_si512(y + i * ldy, _mm512_permutexvar_epi32(order, bytes));
      }
      return;
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) {
    const int64_t n = cols - 16 * j;
    const __mmask16 mask = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const uint8_t* res = e.residual != nullptr ? e.residual + i * ldy + 16 * j : nullptr;
      const __m512i q = requantize16(acc[i][j], zero, e.multiplier + 16 * j, e.bias + 16 * j, res, mask, e);
      _mm512_mask_cvtepi32_storeu_epi8(y + i * ldy + 16 * j, mask, q);
    }
  }
}

template <int R, int NB>
void tile(int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b, int64_t bstride,
          const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  __m512i acc[R][NB];
  init_acc(acc, e);
  const uint8_t* rows[R];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) rows[i] = a + i * lda;
  accumulate(acc, rows, k_padded / 4, b, bstride);
  store(acc, cols, e, y, ldy);
}

// The implicit GEMM: per tap, each row's k_tap bytes start at its own pointer.
template <int R, int NB>
void indirect_tile(int64_t cols, int64_t taps, int64_t k_tap, const uint8_t* const* a, int64_t a_offset,
                   const int8_t* b, int64_t bstride, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  __m512i acc[R][NB];
  init_acc(acc, e);
  const int64_t k4 = k_tap / 4;
  for (int64_t t = 0; t < taps; ++t, b += k4 * 64) {
    const uint8_t* rows[R];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) rows[i] = a[i * taps + t] + a_offset;
    accumulate(acc, rows, k4, b, bstride);
  }
  store(acc, cols, e, y, ldy);
}

using TileImpl = void (*)(int64_t, int64_t, const uint8_t*, int64_t, const int8_t*, int64_t, const TileEpilogue&,
                          uint8_t*, int64_t);
using IndirectTileImpl = void (*)(int64_t, int64_t, int64_t, const uint8_t* const*, int64_t, const int8_t*, int64_t,
                                  const TileEpilogue&, uint8_t*, int64_t);

template <int NB, int... Rs>
constexpr TileImpl pick(int64_t rows, std::integer_sequence<int, Rs...>) {
  TileImpl out = nullptr;
  ((out = rows == Rs + 1 ? &tile<Rs + 1, NB> : out), ...);
  return out;
}

template <int NB, int... Rs>
constexpr IndirectTileImpl pick_indirect(int64_t rows, std::integer_sequence<int, Rs...>) {
  IndirectTileImpl out = nullptr;
  ((out = rows == Rs + 1 ? &indirect_tile<Rs + 1, NB> : out), ...);
  return out;
}

constexpr int kMaxRows[5] = {0, 12, 12, 8, 6};

template <int NB>
TileImpl tile_for(int64_t rows) {
  return pick<NB>(rows, std::make_integer_sequence<int, kMaxRows[NB]>());
}

template <int NB>
IndirectTileImpl indirect_tile_for(int64_t rows) {
  return pick_indirect<NB>(rows, std::make_integer_sequence<int, kMaxRows[NB]>());
}

// By the number of 16-column blocks (1..4).
constexpr TileImpl (*kTiles[5])(int64_t) = {nullptr, tile_for<1>, tile_for<2>, tile_for<3>, tile_for<4>};
constexpr IndirectTileImpl (*kIndirectTiles[5])(int64_t) = {nullptr, indirect_tile_for<1>, indirect_tile_for<2>,
                                                            indirect_tile_for<3>, indirect_tile_for<4>};

void gemm_tile(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
               int64_t b_stride, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  kTiles[(cols + 15) / 16](rows)(cols, k_padded, a, lda, b, b_stride, e, y, ldy);
}

void gemm_indirect_tile(int64_t rows, int64_t cols, int64_t taps, int64_t k_tap, const uint8_t* const* a,
                        int64_t a_offset, const int8_t* b, int64_t b_stride, const TileEpilogue& e, uint8_t* y,
                        int64_t ldy) {
  kIndirectTiles[(cols + 15) / 16](rows)(cols, taps, k_tap, a, a_offset, b, b_stride, e, y, ldy);
}

using avx512::depthwise_pixel;

const GemmKernels kKernels{gemm_tile,
                           64,
                           {0, kMaxRows[1], kMaxRows[2], kMaxRows[3], kMaxRows[4]},
                           4,
                           1,
                           nullptr,
                           nullptr,
                           depthwise_pixel,
                           avx512::depthwise_rows,
                           gemm_indirect_tile};

}  // namespace

const GemmKernels* gemm_kernels_avx512_vnni() { return &kKernels; }

}  // namespace tqx::kernels
