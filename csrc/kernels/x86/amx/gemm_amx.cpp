// AMX-INT8 microkernels of the int8 convolution: 32 x 32 output tiles accumulated with tdpbusd
// (16 x 16 x 64 multiply-adds per instruction) in four accumulator tiles, A and B tiles of
// 16 rows x 64 bytes. The packed weights of Note [Packed weights] (kernels/conv.cpp) are already
// in the B-tile layout: 16 consecutive k-groups of a column block, one 64-byte row each. The
// int32 tiles are stored to a small buffer and go through the AVX-512 epilogue, so the bytes are
// those of the scalar reference. Depthwise convolutions use the AVX-512 VNNI kernel.
#include <immintrin.h>

#include <cstring>

#include "kernels/gemm.h"
#include "kernels/x86/kernels_avx512.h"

namespace tqx::kernels {
namespace {

// The tile configuration: palette 1, eight tiles of 16 rows x 64 bytes.
// tmm0..3: accumulators C[row tile][column tile]; tmm4, 5: A row tiles; tmm6, 7: B column tiles.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

TileConfig make_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  return c;
}

void begin() {
  static const TileConfig config = make_config();
  _tile_loadconfig(&config);
}

void end() { _tile_release(); }

template <int RT, int CT>
void tile_impl(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
               int64_t b_stride, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  _tile_zero(0);
  if (CT > 1) _tile_zero(1);
  if (RT > 1) _tile_zero(2);
  if (RT > 1 && CT > 1) _tile_zero(3);
  // B rows are 64 bytes apart; one k-step (64 bytes of k) is 16 of them.
  for (int64_t k = 0; k < k_padded; k += 64) {
    _tile_loadd(4, a + k, lda);
    _tile_loadd(6, b + k * 16, 64);
    _tile_dpbusd(0, 4, 6);
    if (CT > 1) {
      _tile_loadd(7, b + b_stride + k * 16, 64);
      _tile_dpbusd(1, 4, 7);
    }
    if (RT > 1) {
      _tile_loadd(5, a + 16 * lda + k, lda);
      _tile_dpbusd(2, 5, 6);
      if (CT > 1) _tile_dpbusd(3, 5, 7);
    }
  }
  alignas(64) int32_t c[32][32];
  _tile_stored(0, &c[0][0], 32 * sizeof(int32_t));
  if (CT > 1) _tile_stored(1, &c[0][16], 32 * sizeof(int32_t));
  if (RT > 1) _tile_stored(2, &c[16][0], 32 * sizeof(int32_t));
  if (RT > 1 && CT > 1) _tile_stored(3, &c[16][16], 32 * sizeof(int32_t));

  const __m512i xz = _mm512_set1_epi32(e.input_zero_point);
  for (int j = 0; j < CT; ++j) {
    const int64_t n = cols - 16 * j;
    const __mmask16 mask = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
    const __m512i zcs = _mm512_mullo_epi32(xz, _mm512_loadu_si512(e.col_sums + 16 * j));
    for (int64_t i = 0; i < rows; ++i) {
      const uint8_t* res = e.residual != nullptr ? e.residual + i * ldy + 16 * j : nullptr;
      const __m512i q = avx512::requantize16(_mm512_load_si512(&c[i][16 * j]), zcs, e.multiplier + 16 * j,
                                             e.bias + 16 * j, res, mask, e);
      _mm512_mask_cvtepi32_storeu_epi8(y + i * ldy + 16 * j, mask, q);
    }
  }
}

void gemm_tile(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
               int64_t b_stride, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  if (rows > 16) {
    if (cols > 16) return tile_impl<2, 2>(rows, cols, k_padded, a, lda, b, b_stride, e, y, ldy);
    return tile_impl<2, 1>(rows, cols, k_padded, a, lda, b, b_stride, e, y, ldy);
  }
  if (cols > 16) return tile_impl<1, 2>(rows, cols, k_padded, a, lda, b, b_stride, e, y, ldy);
  return tile_impl<1, 1>(rows, cols, k_padded, a, lda, b, b_stride, e, y, ldy);
}

const GemmKernels kKernels{gemm_tile, 32, {0, 32, 32, 0, 0}, 64, 16, begin, end, avx512::depthwise_pixel,
                           avx512::depthwise_rows};

}  // namespace

const GemmKernels* gemm_kernels_amx() { return &kKernels; }

}  // namespace tqx::kernels
