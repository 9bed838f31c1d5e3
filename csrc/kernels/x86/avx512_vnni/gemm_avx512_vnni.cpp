// AVX-512 VNNI microkernels of the int8 convolution: a register tile of up to 12 rows x 64
// columns accumulated with vpdpbusd (64 multiply-adds per instruction), over im2col rows or through
// an indirection buffer, and the depthwise kernels (3x3 and 5x5 on vpdpbusd over quads of taps
// where the CPU has VBMI, else kernels_avx512.h's vpdpwssd). Layouts and arithmetic: Note [Packed
// weights] in kernels/conv.cpp.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/isa.h"
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

// init_acc, accumulate and store are always_inline: left to GCC 12's heuristics, some tiles got one
// of them out of line, their accumulator array then lived on the stack, and every vpdpbusd of the
// k-loop came with a load and a store (tile<6,3,true>, tile<4,4,true> and others; after an
// unrelated change in this file, indirect_tile<5,4,true>, which took resnet18's two 7x7 residual
// layers from 290 to 490 us). tests/python/test_kernel_codegen.py checks the tiles for such moves.
//
// The accumulators start at -input_zero_point * column sum (Note [Packed weights]), so the sum of
// x * w they reach is already the reference's sum of (x - x_zp) * w (int32, wrapping alike).
template <int R, int NB>
__attribute__((always_inline)) inline void init_acc(__m512i (&acc)[R][NB], const TileEpilogue& e) {
  const __m512i xz = _mm512_set1_epi32(e.input_zero_point);
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) {
    const __m512i start =
        _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_mullo_epi32(xz, _mm512_loadu_si512(e.col_sums + 16 * j)));
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) acc[i][j] = start;
  }
}

// k4 k-groups of rows a[0..R) (4 bytes each) against B's k-groups from b (block j at b + j * bstride),
// with kPrefetch a line of [pf, pf_end) per k-group (TileEpilogue::prefetch; a separate
// instantiation: with the test in the one loop, the 16-channel 1x1 layers ran at 0.9x).
template <bool kPrefetch, int R, int NB>
__attribute__((always_inline)) inline void accumulate(__m512i (&acc)[R][NB], const uint8_t* const (&a)[R], int64_t k4, const int8_t* b,
                       int64_t bstride, const int8_t*& pf, const int8_t* pf_end) {
  for (int64_t k = 0; k < k4; ++k) {
    if (kPrefetch && pf < pf_end) {
      _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T1);
      pf += 64;
    }
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

// The first 16 * NB bytes of `bytes` (the row's columns in order) to y.
template <int NB>
inline void store_columns(uint8_t* y, __m512i bytes) {
  if constexpr (NB == 4) {
    _mm512_storeu_si512(y, bytes);
  } else if constexpr (NB == 2) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), _mm512_castsi512_si256(bytes));
  } else if constexpr (NB == 1) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y), _mm512_castsi512_si128(bytes));
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), _mm512_castsi512_si256(bytes));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 32), _mm512_extracti32x4_epi32(bytes, 2));
  }
}

// kRes: whether e.residual is set. Separate instantiations: with one test for both, GCC reloaded
// e.residual from memory for every row (the stores to y might alias e).
template <int R, int NB, bool kRes>
__attribute__((always_inline)) inline void store(const __m512i (&acc)[R][NB], int64_t cols, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  const __m512i zero = _mm512_setzero_si512();
  const uint8_t* const residual = kRes ? e.residual : nullptr;
  if (cols == 16 * NB) {
    // Whole rows: the NB vectors (each in [qmin, qmax], so the saturating packs are exact) packed
    // to bytes and put back in column order with one vpermd, one store per row (the masked
    // vpmovdb store of the partial path below is slow on AMD cores). Fewer than four blocks pack
    // some twice: after the packs, dword 4 L + j of lane L holds columns 4 L..4 L + 3 of block j
    // for j < NB (a repeated block for j >= NB), so the permutation puts the NB blocks first, in order.
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    constexpr int j1 = NB > 1 ? 1 : 0, j2 = NB > 2 ? 2 : NB - 1, j3 = NB - 1;
    if (e.lo == static_cast<float>(-e.output_zero_point) && e.hi <= static_cast<float>(255 - e.output_zero_point)) {
      // The lower clamp is the packs' saturation at 0: round(min(v, hi)) + zp saturated to
      // [0, 255] equals the reference's round(clamp(v, lo, hi)) + zp, NaN and overflow
      // included (vminps(hi, v) keeps NaN, vcvtps2dq makes it and overflow INT_MIN, which
      // saturates to 0 = lo + zp; values above hi are hi). Five instructions per 16 columns
      // instead of seven, the zero point added once per 32 as int16.
      const __m512 hi = _mm512_set1_ps(e.hi);
      const __m512i zp16 = _mm512_set1_epi16(static_cast<int16_t>(e.output_zero_point));
      const __m512i rz = _mm512_set1_epi32(e.residual_zero_point);
      const __m512 rmult = _mm512_set1_ps(e.residual_multiplier);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        const uint8_t* res = kRes ? residual + i * ldy : nullptr;
        __m512i q[NB];
#pragma GCC unroll 4
        for (int j = 0; j < NB; ++j) {
          __m512 v =
              _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[i][j]), _mm512_loadu_ps(e.multiplier + 16 * j)),
                            _mm512_loadu_ps(e.bias + 16 * j));
          if (kRes) {
            const __m512i r = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(res + 16 * j)));
            v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(r, rz)), rmult));
          }
          q[j] = _mm512_cvtps_epi32(_mm512_min_ps(hi, v));
        }
        const __m512i w01 = _mm512_adds_epi16(_mm512_packs_epi32(q[0], q[j1]), zp16);
        const __m512i w23 = NB > 2 ? _mm512_adds_epi16(_mm512_packs_epi32(q[j2], q[j3]), zp16) : w01;
        store_columns<NB>(y + i * ldy, _mm512_permutexvar_epi32(order, _mm512_packus_epi16(w01, w23)));
      }
      return;
    }
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const uint8_t* res = kRes ? residual + i * ldy : nullptr;
      __m512i q[NB];
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
        q[j] = requantize16(acc[i][j], zero, e.multiplier + 16 * j, e.bias + 16 * j,
                            kRes ? res + 16 * j : nullptr, 0xFFFF, e);
      }
      const __m512i w01 = _mm512_packs_epi32(q[0], q[j1]);
      const __m512i w23 = NB > 2 ? _mm512_packs_epi32(q[j2], q[j3]) : w01;
      store_columns<NB>(y + i * ldy, _mm512_permutexvar_epi32(order, _mm512_packus_epi16(w01, w23)));
    }
    return;
  }
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) {
    const int64_t n = cols - 16 * j;
    const __mmask16 mask = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const uint8_t* res = kRes ? residual + i * ldy + 16 * j : nullptr;
      const __m512i q = requantize16(acc[i][j], zero, e.multiplier + 16 * j, e.bias + 16 * j, res, mask, e);
      if (n >= 16) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i * ldy + 16 * j), _mm512_cvtepi32_epi8(q));
      } else {
        _mm512_mask_cvtepi32_storeu_epi8(y + i * ldy + 16 * j, mask, q);
      }
    }
  }
}

template <int R, int NB, bool kRes>
void tile(int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b, int64_t bstride,
          const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  __m512i acc[R][NB];
  init_acc(acc, e);
  const uint8_t* rows[R];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) rows[i] = a + i * lda;
  const int8_t* pf = e.prefetch;
  if (pf != nullptr) {
    accumulate<true>(acc, rows, k_padded / 4, b, bstride, pf, e.prefetch_end);
  } else {
    accumulate<false>(acc, rows, k_padded / 4, b, bstride, pf, pf);
  }
  store<R, NB, kRes>(acc, cols, e, y, ldy);
}

// The implicit GEMM: per tap, each row's k_tap bytes start at its own pointer.
template <int R, int NB, bool kRes>
void indirect_tile(int64_t cols, int64_t taps, int64_t k_tap, const uint8_t* const* a, int64_t a_offset,
                   const int8_t* b, int64_t bstride, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  __m512i acc[R][NB];
  init_acc(acc, e);
  const int64_t k4 = k_tap / 4;
  const int8_t* pf = e.prefetch;
  const bool prefetch = pf != nullptr;
  for (int64_t t = 0; t < taps; ++t, b += k4 * 64) {
    const uint8_t* rows[R];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) rows[i] = a[i * taps + t] + a_offset;
    if (prefetch) {
      accumulate<true>(acc, rows, k4, b, bstride, pf, e.prefetch_end);
    } else {
      accumulate<false>(acc, rows, k4, b, bstride, pf, pf);
    }
  }
  store<R, NB, kRes>(acc, cols, e, y, ldy);
}

using TileImpl = void (*)(int64_t, int64_t, const uint8_t*, int64_t, const int8_t*, int64_t, const TileEpilogue&,
                          uint8_t*, int64_t);
using IndirectTileImpl = void (*)(int64_t, int64_t, int64_t, const uint8_t* const*, int64_t, const int8_t*, int64_t,
                                  const TileEpilogue&, uint8_t*, int64_t);

constexpr int kMaxRows[5] = {0, 12, 12, 8, 6};

// The tiles by residual, number of 16-column blocks and rows: one indirect call per tile (a chain
// of tests to find it cost a twentieth of a 1x1 convolution with 16 input channels).
template <class Impl>
using TileRow = std::array<Impl, 13>;  // by rows, 1..12

// The direct (kIndirect false) or the implicit-GEMM tile of R rows and NB blocks.
template <bool kIndirect, int R, int NB, bool kRes>
constexpr auto tile_ptr() {
  if constexpr (kIndirect) {
    return &indirect_tile<R, NB, kRes>;
  } else {
    return &tile<R, NB, kRes>;
  }
}

template <bool kIndirect, bool kRes, int NB, int... Rs>
constexpr auto tiles_by_rows(std::integer_sequence<int, Rs...>) {
  TileRow<decltype(tile_ptr<kIndirect, 1, NB, kRes>())> t{};
  ((t[Rs + 1] = tile_ptr<kIndirect, Rs + 1, NB, kRes>()), ...);
  return t;
}

// [blocks][rows] for one residual setting.
template <bool kIndirect, bool kRes>
constexpr auto tile_table() {
  using Row = decltype(tiles_by_rows<kIndirect, kRes, 1>(std::make_integer_sequence<int, kMaxRows[1]>()));
  return std::array<Row, 5>{Row{}, tiles_by_rows<kIndirect, kRes, 1>(std::make_integer_sequence<int, kMaxRows[1]>()),
                            tiles_by_rows<kIndirect, kRes, 2>(std::make_integer_sequence<int, kMaxRows[2]>()),
                            tiles_by_rows<kIndirect, kRes, 3>(std::make_integer_sequence<int, kMaxRows[3]>()),
                            tiles_by_rows<kIndirect, kRes, 4>(std::make_integer_sequence<int, kMaxRows[4]>())};
}

// [residual][blocks][rows]
constexpr std::array<std::array<TileRow<TileImpl>, 5>, 2> kTiles = {tile_table<false, false>(),
                                                                    tile_table<false, true>()};
constexpr std::array<std::array<TileRow<IndirectTileImpl>, 5>, 2> kIndirectTiles = {tile_table<true, false>(),
                                                                                   tile_table<true, true>()};

void gemm_tile(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
               int64_t b_stride, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  kTiles[e.residual != nullptr][(cols + 15) / 16][rows](cols, k_padded, a, lda, b, b_stride, e, y, ldy);
}

// `count` tiles of R rows in turn from row 0 of a, y and e.residual; e.prefetch is the cursor into
// [e.prefetch, e.prefetch_end) for the next tile's slice of pf_step bytes (none for the first tile
// when skip_first). Returns the cursor after the last tile.
template <int R, int NB, bool kRes>
const int8_t* tile_run(int64_t count, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
                       int64_t bstride, const TileEpilogue& e, uint8_t* y, int64_t ldy, int64_t pf_step,
                       bool skip_first) {
  TileEpilogue te = e;
  const int8_t* pf = e.prefetch;
  const int8_t* const pf_end = e.prefetch_end;
  for (int64_t i = 0; i < count; ++i) {
    if (pf == nullptr || pf == pf_end || (i == 0 && skip_first)) {
      te.prefetch = te.prefetch_end = nullptr;
    } else {
      te.prefetch = pf;
      pf = pf_end - pf > pf_step ? pf + pf_step : pf_end;
      te.prefetch_end = pf;
    }
    tile<R, NB, kRes>(cols, k_padded, a, lda, b, bstride, te, y, ldy);
    a += R * lda;
    y += R * ldy;
    if (kRes) te.residual += R * ldy;
  }
  return pf;
}

using TileRunImpl = const int8_t* (*)(int64_t, int64_t, int64_t, const uint8_t*, int64_t, const int8_t*, int64_t,
                                      const TileEpilogue&, uint8_t*, int64_t, int64_t, bool);

template <bool kRes, int NB, int... Rs>
constexpr auto runs_by_rows(std::integer_sequence<int, Rs...>) {
  TileRow<TileRunImpl> t{};
  ((t[Rs + 1] = &tile_run<Rs + 1, NB, kRes>), ...);
  return t;
}

template <bool kRes>
constexpr std::array<TileRow<TileRunImpl>, 5> run_table() {
  return {TileRow<TileRunImpl>{}, runs_by_rows<kRes, 1>(std::make_integer_sequence<int, kMaxRows[1]>()),
          runs_by_rows<kRes, 2>(std::make_integer_sequence<int, kMaxRows[2]>()),
          runs_by_rows<kRes, 3>(std::make_integer_sequence<int, kMaxRows[3]>()),
          runs_by_rows<kRes, 4>(std::make_integer_sequence<int, kMaxRows[4]>())};
}

// [residual][blocks][rows]
constexpr std::array<std::array<TileRow<TileRunImpl>, 5>, 2> kRuns = {run_table<false>(), run_table<true>()};

// GemmKernels::tiles: the rows in tiles of nearly equal height (as conv.cpp's for_each_tile splits
// them), two calls through the table (the taller tiles, then the others) instead of one per tile.
void gemm_tiles(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
                int64_t b_stride, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  if (rows <= 0) return;
  const int nb = static_cast<int>((cols + 15) / 16);
  const int64_t max_rows = kMaxRows[nb];
  const int64_t tiles = (rows + max_rows - 1) / max_rows, base = rows / tiles, taller = rows % tiles;
  const int64_t slices = std::max<int64_t>(1, tiles - 1);
  const int64_t pf_step = e.prefetch == nullptr ? 0 : ((e.prefetch_end - e.prefetch) + slices - 1) / slices;
  const auto& runs = kRuns[e.residual != nullptr][nb];
  TileEpilogue te = e;
  if (taller > 0) {
    te.prefetch = runs[base + 1](taller, cols, k_padded, a, lda, b, b_stride, te, y, ldy, pf_step, tiles > 1);
    const int64_t done = taller * (base + 1);
    a += done * lda;
    y += done * ldy;
    if (te.residual != nullptr) te.residual += done * ldy;
  }
  if (tiles > taller) {
    runs[base](tiles - taller, cols, k_padded, a, lda, b, b_stride, te, y, ldy, pf_step, tiles > 1 && taller == 0);
  }
}

void gemm_indirect_tile(int64_t rows, int64_t cols, int64_t taps, int64_t k_tap, const uint8_t* const* a,
                        int64_t a_offset, const int8_t* b, int64_t b_stride, const TileEpilogue& e, uint8_t* y,
                        int64_t ldy) {
  kIndirectTiles[e.residual != nullptr][(cols + 15) / 16][rows](cols, taps, k_tap, a, a_offset, b, b_stride, e, y,
                                                                ldy);
}

using avx512::depthwise_pixel;

// Byte 4c + j of the result is byte 16j + c of {lo, hi} (lanes 0, 1 of lo, then of hi; vpermi2b,
// AVX-512 VBMI): four taps' 16 channels become 16 dwords of four taps each, vpdpbusd's layout.
// Issued through asm so this file keeps the AVX-512 VNNI level's flags (Cascade Lake has VNNI
// without VBMI); depthwise_rows picks this path only where cpu_has_avx512_vbmi().
inline __m512i transpose4x16(__m512i idx, __m256i lo, __m256i hi) {
  __asm__("vpermi2b %2, %1, %0" : "+v"(idx) : "v"(_mm512_castsi256_si512(lo)), "v"(_mm512_castsi256_si512(hi)));
  return idx;
}

// The int32 sums of 16 channels of one output pixel over T taps, four taps per vpdpbusd: the 16
// bytes of taps 4g..4g+3 at ptr(t) (two 32-byte pairs, each a load and a vinserti128 from memory,
// so no load waits on an earlier one), interleaved per channel by one vpermi2b; wq[g] holds the s8
// weights of group g (zero past T). The products and sums are the same int32 values as
// vpdpwssd's on the int16 pairs.
template <int T, class Ptr>
inline __m512i depthwise_quads16(Ptr ptr, const __m512i* wq, __m512i idx, __m512i init) {
  constexpr int kGroups = (T + 3) / 4;
  auto tap = [&](int t) { return reinterpret_cast<const __m128i*>(ptr(t < T ? t : 0)); };
  __m512i acc[2] = {init, _mm512_setzero_si512()};
#pragma GCC unroll 8
  for (int g = 0; g < kGroups; ++g) {
    const __m256i lo = _mm256_loadu2_m128i(tap(4 * g + 1), tap(4 * g));
    const __m256i hi = _mm256_loadu2_m128i(tap(4 * g + 3), tap(4 * g + 2));
    acc[g & 1] = _mm512_dpbusd_epi32(acc[g & 1], transpose4x16(idx, lo, hi), wq[g]);
  }
  return _mm512_add_epi32(acc[0], acc[1]);
}

// The quad of input columns at r, r + c, r + 2c, r + 3c (16 channels each), transposed to vpdpbusd's
// layout: byte 4 ch + i is column i's channel ch.
inline __m512i column_quad16(const uint8_t* r, int64_t c, __m512i idx) {
  const __m256i lo = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(r + c), reinterpret_cast<const __m128i*>(r));
  const __m256i hi =
      _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(r + 3 * c), reinterpret_cast<const __m128i*>(r + 2 * c));
  return transpose4x16(idx, lo, hi);
}

// Kernel row kh's weights shifted by d (-3..2) within a quad of columns (DepthwiseWeights::quads).
inline __m512i shifted_weights(const int8_t* shifts, int kh, int d) {
  return _mm512_load_si512(shifts + (kh * 6 + d + 3) * 64);
}

// Two adjacent output pixels j, j + 1 of a 3x3 convolution with stride and dilation 1 along the
// row: their windows share the middle columns, so each kernel row's four input columns j..j+3,
// transposed once, give pixel j's sum with the weights shifted by 0, (w0, w1, w2, 0) (w[2 kh]),
// and pixel j + 1's with them shifted by -1, (0, w0, w1, w2) (w[2 kh + 1]).
template <class Row>
inline void depthwise_pair16(Row row, int64_t c, const __m512i (&w)[6], __m512i idx, __m512i init, __m512i& acc0,
                             __m512i& acc1) {
  acc0 = acc1 = init;
#pragma GCC unroll 3
  for (int kh = 0; kh < 3; ++kh) {
    const __m512i q = column_quad16(row(kh), c, idx);
    dpbusd_in_place(acc0, q, w[2 * kh]);
    dpbusd_in_place(acc1, q, w[2 * kh + 1]);
  }
}

// Two adjacent output pixels j, j + 1 of a 3x3 convolution with stride 2 and dilation 1 along the
// row. Their windows span five input columns; per kernel row, the quad of columns 0..3 (q0[kh],
// carried over from the pair before) gives pixel j's sum with the weights shifted by 0 (w[3 kh])
// and pixel j + 1's columns 2, 3 with them shifted by -2, (0, 0, w0, w1) (w[3 kh + 1]); the quad
// of columns 4..7, made here and left in q0[kh] for the next pair, gives its column 4 with them
// shifted by 2, (w2, 0, 0, 0) (w[3 kh + 2]). Three vpermi2b per pair instead of six. (The same
// for stride 1, four pixels per two quads, measured slower: its eighteen weight vectors do not
// stay in registers, and the loads bound these kernels.)
template <class Row>
inline void depthwise_stride2_pair16(Row row, int64_t c, const __m512i (&w)[9], __m512i idx, __m512i init,
                                     __m512i (&q0)[3], __m512i& acc0, __m512i& acc1) {
  acc0 = acc1 = init;
#pragma GCC unroll 3
  for (int kh = 0; kh < 3; ++kh) {
    const __m512i q1 = column_quad16(row(kh) + 4 * c, c, idx);
    dpbusd_in_place(acc0, q0[kh], w[3 * kh]);
    dpbusd_in_place(acc1, q0[kh], w[3 * kh + 1]);
    dpbusd_in_place(acc1, q1, w[3 * kh + 2]);
    q0[kh] = q1;
  }
}

// The full 16-channel blocks with depthwise_quads16 (3x3: three vpdpbusd and three vpermb per
// pixel and block instead of five vpdpwssd, nine vpmovzxbd and four shift-or pairs), and for 3x3
// with stride and dilation 1 along rows, the inner pixels in pairs (depthwise_pair16). Pixels outer
// in segments of up to kDepthwiseSegment of one output row, channel blocks inner: a segment's output and
// input lines stay in L1 while every block passes over them (block-outer passes over the whole
// image left each 16-byte store and load to miss L1; the stores bound the loop). The weight quads
// come packed (DepthwiseWeights::quads); padding taps read a row of input zero points. The last
// partial block, if any, goes to depthwise_rows_taps.
template <int T>
void depthwise_rows_vbmi(const DepthwiseShape& s, const uint8_t* x, const DepthwiseWeights& w, const TileEpilogue& e,
                         uint8_t* y, int64_t m_begin, int64_t m_end) {
  constexpr int kGroups = (T + 3) / 4, kPerBlock = kGroups + (T == 9 ? 18 : 0);
  const int64_t c = s.channels, full = c / 16 * 16;
  const DepthwiseGeometry geo = depthwise_geometry(s);
  int64_t off[T];  // a local copy: geo escapes to depthwise_segment, so y's stores could not be moved past its loads
  std::copy(geo.off, geo.off + T, off);
  const std::vector<uint8_t> zero_row(static_cast<size_t>(c), static_cast<uint8_t>(e.input_zero_point));
  // 3x3 with dilation 1 along rows and stride 1 or 2: inner pixels in pairs (depthwise_pair16,
  // depthwise_stride2_pair16).
  const bool shifted = T == 9 && s.dilation_w == 1 && (s.stride_w == 1 || s.stride_w == 2);
  const bool pairs = shifted && s.stride_w == 1;
  int64_t row_off[3] = {};  // kernel row kh's offset from the window origin
  if (shifted) {
    for (int kh = 0; kh < 3; ++kh) row_off[kh] = off[3 * kh];
  }
  alignas(64) int8_t idx_bytes[64];
  for (int i = 0; i < 64; ++i)
    idx_bytes[i] = static_cast<int8_t>((i % 4 < 2 ? 16 * (i % 4) : 32 + 16 * (i % 4)) + i / 4);
  const __m512i idx = _mm512_load_si512(idx_bytes);
  const __m512i xz = _mm512_set1_epi32(e.input_zero_point);
  const __m512 lo = _mm512_set1_ps(e.lo), hi = _mm512_set1_ps(e.hi), rmult = _mm512_set1_ps(e.residual_multiplier);
  const __m512i yz = _mm512_set1_epi32(e.output_zero_point), rz = _mm512_set1_epi32(e.residual_zero_point);
  const bool packs_clamp =
      e.lo == static_cast<float>(-e.output_zero_point) && e.hi <= static_cast<float>(255 - e.output_zero_point);
  const __m512i zp16 = _mm512_set1_epi16(static_cast<int16_t>(e.output_zero_point));
  // After the packs, dword 4 L + d of lane L holds pixel d's channels 4L..4L+3 (d = 0, 1).
  const __m512i pair_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 4, 8, 12, 1, 5, 9, 13);
  const uint8_t* const residual = e.residual;
  const int64_t step = s.stride_w * c;
  const uint8_t* p[kDepthwiseSegment][kDepthwiseRowsMaxTaps];  // border pixels' tap pointers at channel 0
  for (int64_t m = m_begin; m < m_end;) {
    const DepthwiseSegment seg = depthwise_segment(s, geo, x, zero_row.data(), m, m_end, p);
    const int64_t count = seg.count, in_lo = seg.in_lo, in_hi = seg.in_hi;
    const uint8_t* const base = seg.base;
    uint8_t* const yseg = y + m * c;
    // Pixels before group_end have their window's first column at most in_w - 8.
    const int64_t ow0 = m % s.out_w;
    const int64_t group_end =
        s.in_w - 8 + s.pad_w < 0 ? 0 : std::max<int64_t>(0, (s.in_w - 8 + s.pad_w) / s.stride_w + 1 - ow0);
    const uint8_t* const rseg = residual != nullptr ? residual + m * c : nullptr;
    for (int64_t c0 = 0; c0 < full; c0 += 16) {
      const int8_t* const wblock = w.quads + c0 / 16 * kPerBlock * 64;
      __m512i wq[kGroups];
      for (int g = 0; g < kGroups; ++g) wq[g] = _mm512_load_si512(wblock + g * 64);
      // The sums start at -input_zero_point * column sum (as the GEMM tiles' accumulators do).
      const __m512i nzcs =
          _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_mullo_epi32(xz, _mm512_loadu_si512(e.col_sums + c0)));
      const __m512 mult = _mm512_loadu_ps(e.multiplier + c0), bias = _mm512_loadu_ps(e.bias + c0);
      // depthwise_rows_taps' epilogue, the same float32 operations in the same order.
      auto value = [&](__m512i acc, int64_t j) {
        __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult), bias);
        if (rseg != nullptr) {
          const __m512i r = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rseg + j * c + c0)));
          v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(r, rz)), rmult));
        }
        return v;
      };
      auto finish = [&](__m512i acc, int64_t j) {
        const __m512 v = _mm512_min_ps(_mm512_max_ps(value(acc, j), lo), hi);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(yseg + j * c + c0),
                         _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(v), yz)));
      };
      // Two pixels at once. Where the lower clamp is the zero point's (lo == -zp), the saturating
      // packs clamp below, as in the GEMM tiles' 64-column store (NaN and overflow included).
      auto finish2 = [&](__m512i acc0, __m512i acc1, int64_t j) {
        if (!packs_clamp) {
          finish(acc0, j);
          finish(acc1, j + 1);
          return;
        }
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_min_ps(hi, value(acc0, j)));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_min_ps(hi, value(acc1, j + 1)));
        const __m512i w16 = _mm512_adds_epi16(_mm512_packs_epi32(q0, q1), zp16);
        const __m256i both = _mm512_castsi512_si256(_mm512_permutexvar_epi32(pair_order, _mm512_packus_epi16(w16, w16)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(yseg + j * c + c0), _mm256_castsi256_si128(both));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(yseg + (j + 1) * c + c0), _mm256_extracti128_si256(both, 1));
      };
      for (int64_t j = 0; j < in_lo; ++j) {
        finish(depthwise_quads16<T>([&](int t) { return p[j][t] + c0; }, wq, idx, nzcs), j);
      }
      int64_t j = in_lo;
      const int8_t* const shifts = wblock + kGroups * 64;
      if (pairs) {
        __m512i wp[6];
        for (int kh = 0; kh < 3; ++kh) {
          wp[2 * kh] = shifted_weights(shifts, kh, 0);
          wp[2 * kh + 1] = shifted_weights(shifts, kh, -1);
        }
        for (; j + 1 < in_hi; j += 2) {
          const uint8_t* const b = base + j * step + c0;
          __m512i acc0, acc1;
          depthwise_pair16([&](int kh) { return b + row_off[kh]; }, c, wp, idx, nzcs, acc0, acc1);
          finish2(acc0, acc1, j);
        }
      } else if (shifted) {
        // Pairs whose eight columns lie inside the input row (the last ones are read, with zero
        // weights: they must be readable).
        const int64_t last = std::min(in_hi - 2, group_end - 1);
        if (j <= last) {
          __m512i w2[9], q0[3];
          for (int kh = 0; kh < 3; ++kh) {
            w2[3 * kh] = shifted_weights(shifts, kh, 0);
            w2[3 * kh + 1] = shifted_weights(shifts, kh, -2);
            w2[3 * kh + 2] = shifted_weights(shifts, kh, 2);
            q0[kh] = column_quad16(base + j * step + c0 + row_off[kh], c, idx);
          }
          for (; j <= last; j += 2) {
            const uint8_t* const b = base + j * step + c0;
            __m512i acc0, acc1;
            depthwise_stride2_pair16([&](int kh) { return b + row_off[kh]; }, c, w2, idx, nzcs, q0, acc0, acc1);
            finish2(acc0, acc1, j);
          }
        }
      }
      for (; j + 1 < in_hi; j += 2) {  // other strides: two pixels per epilogue
        const uint8_t* const b = base + j * step + c0;
        const __m512i acc0 = depthwise_quads16<T>([&](int t) { return b + off[t]; }, wq, idx, nzcs);
        const __m512i acc1 = depthwise_quads16<T>([&](int t) { return b + step + off[t]; }, wq, idx, nzcs);
        finish2(acc0, acc1, j);
      }
      for (; j < in_hi; ++j) {
        const uint8_t* const b = base + j * step + c0;
        finish(depthwise_quads16<T>([&](int t) { return b + off[t]; }, wq, idx, nzcs), j);
      }
      for (int64_t j = in_hi; j < count; ++j) {
        finish(depthwise_quads16<T>([&](int t) { return p[j][t] + c0; }, wq, idx, nzcs), j);
      }
    }
    m += count;
  }
  if (full < c) avx512::depthwise_rows_taps<T>(s, x, w.pairs, e, y, m_begin, m_end, full);
}

// 3x3 and 5x5 on the vpdpbusd path where the CPU has VBMI; everything else as the AMX file does.
bool depthwise_rows(const DepthwiseShape& s, const uint8_t* x, const DepthwiseWeights& w, const TileEpilogue& e,
                    uint8_t* y, int64_t m_begin, int64_t m_end) {
  static const bool vbmi = cpu_has_avx512_vbmi();
  const int64_t taps = s.kernel_h * s.kernel_w;
  if (vbmi && w.quads != nullptr && taps == 9) {
    depthwise_rows_vbmi<9>(s, x, w, e, y, m_begin, m_end);
  } else if (vbmi && w.quads != nullptr && taps == 25) {
    depthwise_rows_vbmi<25>(s, x, w, e, y, m_begin, m_end);
  } else {
    return avx512::depthwise_rows(s, x, w, e, y, m_begin, m_end);
  }
  return true;
}

GemmKernels make() {
  GemmKernels k{gemm_tile,
                64,
                {0, kMaxRows[1], kMaxRows[2], kMaxRows[3], kMaxRows[4]},
                4,
                1,
                nullptr,
                nullptr,
                depthwise_pixel,
                depthwise_rows,
                gemm_indirect_tile};
  k.tiles = gemm_tiles;
  k.depthwise_quads = true;
  return k;
}

const GemmKernels kKernels = make();

}  // namespace

const GemmKernels* gemm_kernels_avx512_vnni() { return &kKernels; }

}  // namespace tqx::kernels
