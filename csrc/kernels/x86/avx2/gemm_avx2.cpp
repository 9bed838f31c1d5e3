// AVX2 microkernels of the int8 convolution. AVX2 has no exact uint8 x int8 dot product:
// vpmaddubsw saturates its int16 pair sums (255 * 127 * 2 > 32767), which is why PyTorch's x86
// engines reduce the activation or weight range on such CPUs. We keep the products exact by
// multiplying in int16 instead: the driver widens the A rows (activations) to int16 once per row
// block (widen_rows), the weights are kept as int16 k-pairs as well (PackedConvWeights::int16_blocks(),
// made on first use), and vpmaddwd adds two exact products into each int32 lane. Per 16
// multiply-adds that is one vpmaddwd and one vpaddd: half the multiplies of the split-byte
// vpmaddubsw emulation this replaced (two vpmaddubsw and two vpmaddwd per 32 products), and at
// most 1.25x the instructions of the inexact vpmaddubsw + vpmaddwd + vpaddd sequence. Where every
// activation byte is below 128 (the x86 preset's 7-bit activations), that sequence is exact, and
// the driver switches to the kSeven tiles (GemmKernels::seven_bit), which read the bytes and the
// int8 weight blocks directly.
//
// Lane layout: a k-pair of a 16-column block is two ymm of int16, the 32-bit lane c holding column
// c's weights (w[k], w[k+1]); a row's two activations (a[k], a[k+1]), broadcast as one 32-bit
// value, line up with every lane, so each accumulator lane is one output column.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/x86/gemm_ymm.h"

namespace tqx::kernels {
namespace {

constexpr int kRows = 6;  // 6 rows x 2 accumulators + 2 B + 1 A = 15 of the 16 ymm registers
constexpr int kCallRows = 96;  // rows per gemm_tile call: the driver's whole row block

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


// The requantize epilogue of 16 columns: requantize8's float32 operations (Note [Rounding]) with
// the vectors loaded once per tile (the uint8_t output stores may alias anything, so fields read
// through `e` would be reloaded after every store) and the zero point added once per 16 outputs,
// in int16 between the two packs (exact: the values are already clamped to [qmin - zp, qmax - zp]).
// When qmin == 0 (lo == -zp: no fused activation, or ReLU with zero point 0) the lower clamp is
// left to the saturating packs: a NaN survives min(hi, v), converts to INT32_MIN and packs to 0,
// as does anything below -zp, so the bytes are those of the reference.
//
// Clamping in int16 instead (TileEpilogue::int_clamp): where no value can reach 2^31, vpcvtps2dq rounds
// every value exactly (a NaN still gives INT32_MIN), and rounding commutes with a clamp to integer
// bounds; so the float clamp can give way to vpmaxsw / vpminsw against [qmin, qmax] after the
// zero point is added (the int16 saturation of vpackssdw keeps out-of-range values out of range).
// Two integer operations per 16 outputs instead of four float ones per 16; on Zen 3 the float
// clamp cost the small-k 1x1 layers 12-29 % of their time.
struct Epilogue16 {
  __m256i zcs[2], nzcs[2], rz, yz16, qmin16, qmax16;
  __m256 mult[2], bias[2], lo, hi, rmult;
  bool lower_by_pack;
  Epilogue16(const TileEpilogue& e, int64_t c0) {
    const __m256i xz = _mm256_set1_epi32(e.input_zero_point);
    for (int h = 0; h < 2; ++h) {
      zcs[h] = _mm256_mullo_epi32(xz, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.col_sums + c0 + 8 * h)));
      nzcs[h] = _mm256_sub_epi32(_mm256_setzero_si256(), zcs[h]);
      mult[h] = _mm256_loadu_ps(e.multiplier + c0 + 8 * h);
      bias[h] = _mm256_loadu_ps(e.bias + c0 + 8 * h);
    }
    rz = _mm256_set1_epi32(e.residual_zero_point);
    yz16 = _mm256_set1_epi16(static_cast<int16_t>(e.output_zero_point));
    lo = _mm256_set1_ps(e.lo);
    hi = _mm256_set1_ps(e.hi);
    rmult = _mm256_set1_ps(e.residual_multiplier);
    lower_by_pack = e.lo == -static_cast<float>(e.output_zero_point);
    qmin16 = _mm256_set1_epi16(static_cast<int16_t>(e.lo + static_cast<float>(e.output_zero_point)));
    qmax16 = _mm256_set1_epi16(static_cast<int16_t>(e.hi + static_cast<float>(e.output_zero_point)));
  }
  // Columns 8h..8h+7 of acc (sum x * w), before the zero point; residual: 8 bytes or null.
  __m256i apply(__m256i acc, int h, const uint8_t* residual) const {
    __m256 v = ymm::requantize8_value(acc, zcs[h], mult[h], bias[h], residual, rz, rmult);
    // max first where it is needed: max(NaN, lo) = lo, as the reference.
    v = lower_by_pack ? _mm256_min_ps(hi, v) : _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return _mm256_cvtps_epi32(v);
  }
  // apply() for accumulators that started at nzcs[h] rather than 0 (the GEMM tiles): no subtraction.
  __m256i apply_started(__m256i acc, int h, const uint8_t* residual) const {
    __m256 v = ymm::requantize8_value(acc, _mm256_setzero_si256(), mult[h], bias[h], residual, rz, rmult);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return _mm256_cvtps_epi32(v);
  }
  // apply_started() without the clamp: only where TileEpilogue::int_clamp holds, followed by clamp16.
  __m256i apply_unclamped(__m256i acc, int h, const uint8_t* residual) const {
    return _mm256_cvtps_epi32(
        ymm::requantize8_value(acc, _mm256_setzero_si256(), mult[h], bias[h], residual, rz, rmult));
  }
  // pack16() of unclamped halves clamped to [qmin, qmax].
  __m256i clamp16(__m256i p16) const { return _mm256_min_epi16(_mm256_max_epi16(p16, qmin16), qmax16); }
  // apply()'s two halves (columns 0-7 and 8-15) as int16 with the output zero point added, in the
  // order of vpackssdw: [0-3, 8-11 | 4-7, 12-15].
  __m256i pack16(__m256i q0, __m256i q1) const { return _mm256_adds_epi16(_mm256_packs_epi32(q0, q1), yz16); }
  // One pack16 result as its 16 bytes in column order.
  __m128i bytes_of(__m256i p16) const {
    const __m256i p8 = _mm256_packus_epi16(p16, p16);  // dwords [0-3, 8-11, 0-3, 8-11 | 4-7, 12-15, ...]
    return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5)));
  }
  // 16 outputs in order from apply()'s two halves.
  __m128i pack(__m256i q0, __m256i q1) const { return bytes_of(pack16(q0, q1)); }
};

// acc += the four uint8 x int8 products of each lane (vpmaddubsw, then vpmaddwd by ones): exact
// only when every a byte is below 128, since the int16 pair sums then stay within
// [-2 * 127 * 128, 2 * 127 * 127]. `ones` is a memory operand: the 6x16 tile needs all 16 registers.
inline void maddubs_into(__m256i& acc, __m256i a, __m256i b, const __m256i& ones) {
  __m256i t;
  __asm__("vpmaddubsw %[b], %[a], %[t]\n\t"
          "vpmaddwd %[ones], %[t], %[t]\n\t"
          "vpaddd %[t], %[acc], %[acc]"
          : [acc] "+x"(acc), [t] "=&x"(t)
          : [a] "x"(a), [b] "x"(b), [ones] "m"(ones));
}

alignas(32) const int16_t kOnes16[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

// One tile row's 16 outputs as Epilogue16::pack16 gives them; res: the row's residual bytes (read
// only when kResidual, and then only its first `cols`).
// kIntClamp: TileEpilogue::int_clamp holds.
template <bool kResidual, bool kIntClamp>
inline __m256i tile_row16(const Epilogue16& ep, __m256i acc0, __m256i acc1, int64_t cols, const uint8_t* res) {
  if constexpr (!kResidual) {
    if constexpr (kIntClamp) {
      return ep.clamp16(ep.pack16(ep.apply_unclamped(acc0, 0, nullptr), ep.apply_unclamped(acc1, 1, nullptr)));
    }
    return ep.pack16(ep.apply_started(acc0, 0, nullptr), ep.apply_started(acc1, 1, nullptr));
  } else {
    alignas(16) uint8_t res_tmp[16];
    if (cols < 16) {  // only the tile's columns exist
      std::memset(res_tmp, 0, sizeof(res_tmp));
      std::memcpy(res_tmp, res, static_cast<size_t>(cols));
      res = res_tmp;
    }
    if constexpr (kIntClamp) return ep.clamp16(ep.pack16(ep.apply_unclamped(acc0, 0, res), ep.apply_unclamped(acc1, 1, res + 8)));
    return ep.pack16(ep.apply_started(acc0, 0, res), ep.apply_started(acc1, 1, res + 8));
  }
}

// Stores a tile row's 16 bytes, or its first `cols` of them.
inline void tile_store(int64_t cols, __m128i bytes, uint8_t* out) {
  if (cols >= 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), bytes);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    std::memcpy(out, tmp, static_cast<size_t>(cols));
  }
}

// R rows x up to 16 columns; each accumulator lane is one output column (0-7, 8-15).
// kSeven = false: A rows of int16 (widen_rows) and B as int16 k-pairs; per k-pair two loads of B,
//   per row one broadcast of its two activations, two vpmaddwd and two vpaddd.
// kSeven = true (activations below 128): A rows of bytes and B's int8 k-groups; per k-group two
//   loads of B, per row one broadcast of four activations and two maddubs_into (3 instructions
//   per 32 products instead of 4).
// kHalf: a last block of at most 8 columns, whose upper half would only multiply zero weights.
// kResidual: the epilogue adds the residual bytes (residual is not null). A separate instantiation:
// with the residual path present behind a run-time test, the plain tile ran at 0.55-0.65x the speed
// of this one on small-k 1x1 layers (k = 16-32) on Zen 3.
// Not inlined: inside gemm_tile's loop GCC 12 kept the accumulators on the stack (a load and a
// store per vpaddd), at half the speed. a, lda and b are in bytes.
template <int R, bool kHalf, bool kSeven, bool kResidual, bool kIntClamp>
__attribute__((noinline)) void tile_rows(int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda,
                                         const int8_t* b, const Epilogue16& ep, const uint8_t* residual, uint8_t* y,
                                         int64_t ldy) {
  // The accumulators start at -x_zp * column sum (Epilogue16::apply_started: no subtraction after).
  __m256i acc[R][2];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) acc[i][0] = ep.nzcs[0], acc[i][1] = ep.nzcs[1];
  if constexpr (kSeven) {
    const __m256i& ones = *reinterpret_cast<const __m256i*>(kOnes16);
    for (int64_t k = 0; k < k_padded / 4; ++k) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + k * 64));
      const __m256i b1 = kHalf ? b0 : _mm256_load_si256(reinterpret_cast<const __m256i*>(b + k * 64 + 32));
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        int32_t quad;
        std::memcpy(&quad, a + i * lda + k * 4, sizeof(quad));
        const __m256i av = _mm256_set1_epi32(quad);
        maddubs_into(acc[i][0], av, b0, ones);
        if (!kHalf) maddubs_into(acc[i][1], av, b1, ones);
      }
    }
  } else {
    const auto* b16 = reinterpret_cast<const int16_t*>(b);
    for (int64_t k = 0; k < k_padded / 2; ++k) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b16 + k * 32));
      const __m256i b1 = kHalf ? b0 : _mm256_load_si256(reinterpret_cast<const __m256i*>(b16 + k * 32 + 16));
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        int32_t pair;
        std::memcpy(&pair, a + i * lda + k * 4, sizeof(pair));  // two int16 activations
        const __m256i av = _mm256_set1_epi32(pair);
        madd_into(acc[i][0], av, b0);
        if (!kHalf) madd_into(acc[i][1], av, b1);
      }
    }
  }
  // (Helpers, not lambdas: a lambda capturing acc by reference put the accumulators on the stack.)
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    const uint8_t* res = kResidual ? residual + i * ldy : nullptr;
    tile_store(cols, ep.bytes_of(tile_row16<kResidual, kIntClamp>(ep, acc[i][0], acc[i][1], cols, res)), y + i * ldy);
  }
}

using TileImpl = void (*)(int64_t, int64_t, const uint8_t*, int64_t, const int8_t*, const Epilogue16&, const uint8_t*,
                          uint8_t*, int64_t);

template <bool kHalf, bool kSeven, bool kResidual, bool kIntClamp, int... Rs>
TileImpl pick(int64_t rows, std::integer_sequence<int, Rs...>) {
  TileImpl out = nullptr;
  ((out = rows == Rs + 1 ? &tile_rows<Rs + 1, kHalf, kSeven, kResidual, kIntClamp> : out), ...);
  return out;
}

template <bool kSeven>
TileImpl pick_rows(int64_t rows, bool half, bool residual, bool int_clamp) {
  const auto seq = std::make_integer_sequence<int, kRows>();
  if (residual) {
    if (int_clamp) return half ? pick<true, kSeven, true, true>(rows, seq) : pick<false, kSeven, true, true>(rows, seq);
    return half ? pick<true, kSeven, true, false>(rows, seq) : pick<false, kSeven, true, false>(rows, seq);
  }
  if (int_clamp) return half ? pick<true, kSeven, false, true>(rows, seq) : pick<false, kSeven, false, true>(rows, seq);
  return half ? pick<true, kSeven, false, false>(rows, seq) : pick<false, kSeven, false, false>(rows, seq);
}

// Up to kCallRows rows in runs of kRows, the epilogue's vectors set up once per call. kSeven = false:
// a holds int16 rows from widen_rows and b one block of int16_blocks(); true: bytes and int8 blocks.
template <bool kSeven>
void gemm_tile(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
               int64_t /*b_stride*/, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  const Epilogue16 ep(e, 0);
  const bool half = cols <= 8;
  const bool with_residual = e.residual != nullptr;
  const auto choose = [&](int64_t n) { return pick_rows<kSeven>(n, half, with_residual, e.int_clamp); };
  const TileImpl full = choose(kRows);
  for (int64_t r = 0; r < rows; r += kRows) {
    const int64_t n = std::min<int64_t>(kRows, rows - r);
    const uint8_t* res = with_residual ? e.residual + r * ldy : nullptr;
    const TileImpl tile = n == kRows ? full : choose(n);
    tile(cols, k_padded, a + r * lda, lda, b, ep, res, y + r * ldy, ldy);
  }
}

// The 7-bit tile as an implicit GEMM (GemmIndirectTileFn): row i's reduction is `taps` runs of
// k_tap bytes, run t at a[i * taps + t] + a_offset, B's k-groups following the runs in order. The
// products and the epilogue are tile_rows<R, kHalf, true, ...>'s; the driver takes this path only
// when the whole input is below 128, so no im2col copy is made to be scanned.
template <int R, bool kHalf, bool kResidual, bool kIntClamp>
__attribute__((noinline)) void indirect_rows7(int64_t cols, int64_t taps, int64_t k_tap, const uint8_t* const* a,
                                              int64_t a_offset, const int8_t* b, const Epilogue16& ep,
                                              const uint8_t* residual, uint8_t* y, int64_t ldy) {
  __m256i acc[R][2];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) acc[i][0] = ep.nzcs[0], acc[i][1] = ep.nzcs[1];
  const __m256i& ones = *reinterpret_cast<const __m256i*>(kOnes16);
  const int64_t quads = k_tap / 4;
  for (int64_t t = 0; t < taps; ++t) {
    const uint8_t* p[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) p[i] = a[i * taps + t] + a_offset;
    for (int64_t q = 0; q < quads; ++q, b += 64) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
      const __m256i b1 = kHalf ? b0 : _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 32));
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m256i av = ymm::broadcast4(p[i] + q * 4);
        maddubs_into(acc[i][0], av, b0, ones);
        if (!kHalf) maddubs_into(acc[i][1], av, b1, ones);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    const uint8_t* res = kResidual ? residual + i * ldy : nullptr;
    tile_store(cols, ep.bytes_of(tile_row16<kResidual, kIntClamp>(ep, acc[i][0], acc[i][1], cols, res)), y + i * ldy);
  }
}

using IndirectImpl = void (*)(int64_t, int64_t, int64_t, const uint8_t* const*, int64_t, const int8_t*,
                              const Epilogue16&, const uint8_t*, uint8_t*, int64_t);

template <bool kHalf, bool kResidual, bool kIntClamp, int... Rs>
IndirectImpl pick_indirect(int64_t rows, std::integer_sequence<int, Rs...>) {
  IndirectImpl out = nullptr;
  ((out = rows == Rs + 1 ? &indirect_rows7<Rs + 1, kHalf, kResidual, kIntClamp> : out), ...);
  return out;
}

IndirectImpl pick_indirect_rows(int64_t rows, bool half, bool residual, bool int_clamp) {
  const auto seq = std::make_integer_sequence<int, kRows>();
  if (residual) {
    if (int_clamp) return half ? pick_indirect<true, true, true>(rows, seq) : pick_indirect<false, true, true>(rows, seq);
    return half ? pick_indirect<true, true, false>(rows, seq) : pick_indirect<false, true, false>(rows, seq);
  }
  if (int_clamp) return half ? pick_indirect<true, false, true>(rows, seq) : pick_indirect<false, false, true>(rows, seq);
  return half ? pick_indirect<true, false, false>(rows, seq) : pick_indirect<false, false, false>(rows, seq);
}

void gemm_indirect_tile7(int64_t rows, int64_t cols, int64_t taps, int64_t k_tap, const uint8_t* const* a,
                         int64_t a_offset, const int8_t* b, int64_t /*b_stride*/, const TileEpilogue& e, uint8_t* y,
                         int64_t ldy) {
  const Epilogue16 ep(e, 0);
  const bool half = cols <= 8, with_residual = e.residual != nullptr;
  const IndirectImpl full = pick_indirect_rows(kRows, half, with_residual, e.int_clamp);
  for (int64_t r = 0; r < rows; r += kRows) {
    const int64_t n = std::min<int64_t>(kRows, rows - r);
    const uint8_t* res = with_residual ? e.residual + r * ldy : nullptr;
    const IndirectImpl tile = n == kRows ? full : pick_indirect_rows(n, half, with_residual, e.int_clamp);
    tile(cols, taps, k_tap, a + r * taps, a_offset, b, ep, res, y + r * ldy, ldy);
  }
}

// One output pixel, 16 channels (kFull) or the nc < 16 of a last block, read through zero-padded
// copies. tap(t) points at tap t's first channel of the block; out/residual at y + at, rseg + at.
template <int T, bool kFull, class Tap>
inline void dw_pixel16(const Tap& tap, const __m256i (*wp)[2], const Epilogue16& ep, const uint8_t* rseg, int64_t at,
                       uint8_t* yseg, int64_t nc) {
  constexpr int kPairs = (T + 1) / 2;
  auto load = [&](const uint8_t* q) {
    if (kFull) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    alignas(16) uint8_t tmp[16] = {};
    std::memcpy(tmp, q, static_cast<size_t>(nc));
    return _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
  };
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
#pragma GCC unroll 13
  for (int q = 0; q < kPairs; ++q) {
    const __m128i x0 = load(tap(2 * q));
    const __m128i x1 = 2 * q + 1 < T ? load(tap(2 * q + 1)) : x0;  // the odd tap's partner has weight 0
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(x0, x1)), wp[q][0]));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(x0, x1)), wp[q][1]));
  }
  alignas(16) uint8_t res_tmp[16];
  const uint8_t* res = nullptr;
  if (rseg != nullptr) {
    res = rseg + at;
    if (!kFull) {
      std::memcpy(res_tmp, res, static_cast<size_t>(nc));
      res = res_tmp;
    }
  }
  const __m128i bytes = ep.pack(ep.apply(acc0, 0, res), ep.apply(acc1, 1, res ? res + 8 : nullptr));
  if (kFull) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(yseg + at), bytes);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    std::memcpy(yseg + at, tmp, static_cast<size_t>(nc));
  }
}

// Depthwise convolutions (3x3 and 5x5) over output pixels [m_begin, m_end): pixels in segments of
// up to 16 of one output row, 16-channel blocks outer within a segment so that the block's weights
// stay in registers. Per pair of taps and 16 channels: two loads, vpunpck{l,h}bw to interleave the
// taps' bytes per channel, vpmovzxbw to int16, and vpmaddwd against the packed (w[t], w[t+1])
// pairs adds both products into each channel's int32 lane. Windows inside the input read the taps
// at fixed offsets; border pixels read through per-pixel tap pointers, padding taps pointing at a
// row of input zero points. The epilogue is requantize8's float32 arithmetic (Note [Rounding]).
template <int T>
void depthwise_rows_taps(const DepthwiseShape& s, const uint8_t* x, const int16_t* w, const TileEpilogue& e, uint8_t* y,
                         int64_t m_begin, int64_t m_end) {
  constexpr int kPairs = (T + 1) / 2;
  const int64_t c = s.channels, cp = (c + 15) / 16 * 16;
  const DepthwiseGeometry g = depthwise_geometry(s);
  int64_t off[T];  // a local copy: g escapes to depthwise_segment, so y's stores could not be moved past its loads
  std::copy(g.off, g.off + T, off);
  const std::vector<uint8_t> zero_row(static_cast<size_t>(cp), static_cast<uint8_t>(e.input_zero_point));
  const int64_t step = s.stride_w * c;
  const uint8_t* p[kDepthwiseSegment][kDepthwiseRowsMaxTaps];  // border pixels' tap pointers at channel 0
  for (int64_t m = m_begin; m < m_end;) {
    const DepthwiseSegment seg = depthwise_segment(s, g, x, zero_row.data(), m, m_end, p);
    const int64_t count = seg.count, in_lo = seg.in_lo, in_hi = seg.in_hi;
    const uint8_t* const base = seg.base;
    uint8_t* const yseg = y + m * c;
    const uint8_t* const rseg = e.residual != nullptr ? e.residual + m * c : nullptr;
    for (int64_t c0 = 0; c0 < c; c0 += 16) {
      const int64_t nc = std::min<int64_t>(16, c - c0);
      __m256i wp[kPairs][2];
      for (int q = 0; q < kPairs; ++q) {
        const auto* src = reinterpret_cast<const __m256i*>(w + (q * cp + c0) * 2);
        wp[q][0] = _mm256_load_si256(src);
        wp[q][1] = _mm256_load_si256(src + 1);
      }
      const Epilogue16 ep(e, c0);
      if (nc == 16) {
        for (int64_t j = 0; j < in_lo; ++j) dw_pixel16<T, true>([&](int t) { return p[j][t] + c0; }, wp, ep, rseg, j * c + c0, yseg, 16);
        for (int64_t j = in_lo; j < in_hi; ++j) {
          const uint8_t* const b = base + j * step + c0;
          dw_pixel16<T, true>([&](int t) { return b + off[t]; }, wp, ep, rseg, j * c + c0, yseg, 16);
        }
        for (int64_t j = in_hi; j < count; ++j) dw_pixel16<T, true>([&](int t) { return p[j][t] + c0; }, wp, ep, rseg, j * c + c0, yseg, 16);
      } else {
        for (int64_t j = 0; j < count; ++j) {
          const uint8_t* const b = base + j * step + c0;
          const bool inner = j >= in_lo && j < in_hi;
          dw_pixel16<T, false>([&](int t) { return inner ? b + off[t] : p[j][t] + c0; }, wp, ep, rseg, j * c + c0, yseg, nc);
        }
      }
    }
    m += count;
  }
}

// Depthwise 3x3 / 5x5 for 7-bit activations (every input byte and the input zero point below 128;
// the driver checks): vpmaddubsw on quads of taps. Four taps of 32 channels are interleaved per
// channel with in-lane shuffles only (vpunpck{l,h}bw of two tap pairs, then vpunpck{l,h}wd), giving
// four vectors of 8 channels x (t0, t1, t2, t3) bytes; vpmaddubsw against the quad's weights adds
// the pairs (t0, t1) and (t2, t3) in int16 (exact: |2 * 127 * 128| < 32768) and vpmaddwd by ones
// adds the two into the channel's int32 lane. The last tap (9 and 25 taps leave one) is
// zero-extended to int32 by the same shuffles against zero and multiplied by vpmaddwd against
// (w, 0) pairs. Per 32 channels and 4 taps: 4 loads, 8 shuffles and 12 multiply-adds, against
// the int16 kernel's 4 loads, 8 shuffles (4 of them lane-crossing vpmovzxbw) and 16. The
// accumulators hold channels {0-3, 16-19}, {4-7, 20-23}, {8-11, 24-27}, {12-15, 28-31} of the
// block: the weights and the epilogue's vectors are laid out to match, and the two vpackssdw and
// the vpackuswb of the epilogue put the 32 bytes back in channel order (no vpermd).
struct Dw7Layout {
  int64_t blocks;     // of 32 channels; with 32 or more channels the last starts at c - 32 (it
                      // overlaps the one before and writes some bytes again, rather than taking
                      // the slower path of a partial block)
  const int8_t* wq;   // [block][quad][4 vectors][32 bytes]
  const int16_t* wl;  // the last tap: [block][4 vectors][8 x (w, 0)]
  const int32_t* nzcs;  // [block][4 vectors][8]: -(input zero point x column sums), the accumulators' start
  const float* mult;   // [block][4 vectors][8]
  const float* bias;   // [block][4 vectors][8]
};

// Channel of lane element i (0..7) of accumulator vector j (0..3) in a 32-channel block.
inline int64_t dw7_channel(int j, int i) { return 4 * j + (i / 4) * 16 + i % 4; }

// The first channel of block blk (see Dw7Layout::blocks).
inline int64_t dw7_block_start(int64_t blk, int64_t c) { return c >= 32 ? std::min(blk * 32, c - 32) : 0; }

// kFull: the 32-byte loads may pass the block's nc channels (not the input's end); the store
// writes nc bytes either way.
template <int T, bool kFull, bool kByPack, class Tap>
inline void dw7_pixel(const Tap& tap, const Dw7Layout& L, int64_t blk, const Epilogue16& ep, uint8_t* out,
                      int64_t nc) {
  constexpr int kQuads = T / 4;
  static_assert(T % 4 == 1, "one tap left after the quads");
  const __m256i ones = _mm256_set1_epi16(1), zero = _mm256_setzero_si256();
  auto load = [&](int t) {
    if (kFull) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tap(t)));
    alignas(32) uint8_t tmp[32] = {};  // channels past the last multiply zero weights
    std::memcpy(tmp, tap(t), static_cast<size_t>(nc));
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(tmp));
  };
  // Starting at -x_zp * column sum leaves no subtraction for the epilogue (the same int32 values).
  const auto* nzcs = reinterpret_cast<const __m256i*>(L.nzcs) + blk * 4;
  __m256i acc[4] = {_mm256_load_si256(nzcs), _mm256_load_si256(nzcs + 1), _mm256_load_si256(nzcs + 2),
                    _mm256_load_si256(nzcs + 3)};
  const auto* wq = reinterpret_cast<const __m256i*>(L.wq) + blk * kQuads * 4;
#pragma GCC unroll 8
  for (int g = 0; g < kQuads; ++g) {
    const __m256i x0 = load(4 * g), x1 = load(4 * g + 1), x2 = load(4 * g + 2), x3 = load(4 * g + 3);
    const __m256i a_lo = _mm256_unpacklo_epi8(x0, x1), a_hi = _mm256_unpackhi_epi8(x0, x1);
    const __m256i b_lo = _mm256_unpacklo_epi8(x2, x3), b_hi = _mm256_unpackhi_epi8(x2, x3);
    const __m256i q[4] = {_mm256_unpacklo_epi16(a_lo, b_lo), _mm256_unpackhi_epi16(a_lo, b_lo),
                          _mm256_unpacklo_epi16(a_hi, b_hi), _mm256_unpackhi_epi16(a_hi, b_hi)};
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      acc[j] = _mm256_add_epi32(
          acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[j], _mm256_load_si256(wq + g * 4 + j)), ones));
    }
  }
  {
    const __m256i xl = load(T - 1);
    const __m256i z_lo = _mm256_unpacklo_epi8(xl, zero), z_hi = _mm256_unpackhi_epi8(xl, zero);
    const __m256i r[4] = {_mm256_unpacklo_epi16(z_lo, zero), _mm256_unpackhi_epi16(z_lo, zero),
                          _mm256_unpacklo_epi16(z_hi, zero), _mm256_unpackhi_epi16(z_hi, zero)};
    const auto* wl = reinterpret_cast<const __m256i*>(L.wl) + blk * 4;
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(r[j], _mm256_load_si256(wl + j)));
  }
  __m256i q[4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const int64_t at = (blk * 4 + j) * 8;
    __m256 v = _mm256_cvtepi32_ps(acc[j]);
    v = _mm256_add_ps(_mm256_mul_ps(v, _mm256_load_ps(L.mult + at)), _mm256_load_ps(L.bias + at));
    v = kByPack ? _mm256_min_ps(ep.hi, v) : _mm256_min_ps(_mm256_max_ps(v, ep.lo), ep.hi);
    q[j] = _mm256_cvtps_epi32(v);
  }
  const __m256i p01 = _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), ep.yz16);  // channels 0-7 | 16-23
  const __m256i p23 = _mm256_adds_epi16(_mm256_packs_epi32(q[2], q[3]), ep.yz16);  // 8-15 | 24-31
  const __m256i bytes = _mm256_packus_epi16(p01, p23);                                // 0-15 | 16-31
  if (nc == 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), bytes);
  } else {
    alignas(32) uint8_t tmp[32];
    _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), bytes);
    std::memcpy(out, tmp, static_cast<size_t>(nc));
  }
}

// Output pixels [m_begin, m_end) in segments of up to 16 of one output row (depthwise_segment),
// 32-channel blocks outer within a segment. No residual (the driver keeps those on the int16 kernel).
template <int T, bool kByPack>
void depthwise7_taps(const DepthwiseShape& s, const uint8_t* x, const Dw7Layout& L, const TileEpilogue& e, uint8_t* y,
                     int64_t m_begin, int64_t m_end) {
  const int64_t c = s.channels;
  const DepthwiseGeometry g = depthwise_geometry(s);
  int64_t off[T];
  std::copy(g.off, g.off + T, off);
  // Padding taps read this row; 32 bytes past the channels, since a block reads 32.
  const std::vector<uint8_t> zero_row(static_cast<size_t>(L.blocks * 32), static_cast<uint8_t>(e.input_zero_point));
  // The last image this call reads ends here: a last block's 32-byte loads must not pass it.
  const int64_t plane = s.out_h * s.out_w;
  const uint8_t* const x_end = x + ((m_end - 1) / plane + 1) * s.in_h * s.in_w * c;
  const int64_t step = s.stride_w * c;
  const Epilogue16 ep(e, 0);  // only its clamp and zero-point vectors: the per-channel ones are in L
  const uint8_t* p[kDepthwiseSegment][kDepthwiseRowsMaxTaps];
  for (int64_t m = m_begin; m < m_end;) {
    const DepthwiseSegment seg = depthwise_segment(s, g, x, zero_row.data(), m, m_end, p);
    for (int64_t blk = 0; blk < L.blocks; ++blk) {
      const int64_t c0 = dw7_block_start(blk, c), nc = std::min<int64_t>(32, c - c0);
      uint8_t* const yseg = y + m * c + c0;
      if (nc == 32) {
        for (int64_t j = 0; j < seg.in_lo; ++j) {
          dw7_pixel<T, true, kByPack>([&](int t) { return p[j][t] + c0; }, L, blk, ep, yseg + j * c, 32);
        }
        for (int64_t j = seg.in_lo; j < seg.in_hi; ++j) {
          const uint8_t* const b = seg.base + j * step + c0;
          dw7_pixel<T, true, kByPack>([&](int t) { return b + off[t]; }, L, blk, ep, yseg + j * c, 32);
        }
        for (int64_t j = seg.in_hi; j < seg.count; ++j) {
          dw7_pixel<T, true, kByPack>([&](int t) { return p[j][t] + c0; }, L, blk, ep, yseg + j * c, 32);
        }
        continue;
      }
      // A last block of fewer channels: its 32-byte loads may pass them, but not the input's end.
      for (int64_t j = 0; j < seg.count; ++j) {
        const bool inner = j >= seg.in_lo && j < seg.in_hi;
        const uint8_t* const b = seg.base + j * step + c0;
        auto tap = [&](int t) { return inner ? b + off[t] : p[j][t] + c0; };
        bool safe = true;
        for (int t = 0; t < T; ++t) {
          const uint8_t* q = tap(t);
          safe &= q + 32 <= x_end || (q >= zero_row.data() && q + 32 <= zero_row.data() + zero_row.size());
        }
        if (safe) {
          dw7_pixel<T, true, kByPack>(tap, L, blk, ep, yseg + j * c, nc);
        } else {
          dw7_pixel<T, false, kByPack>(tap, L, blk, ep, yseg + j * c, nc);
        }
      }
    }
    m += seg.count;
  }
}

// Builds the per-call layout (weights by quads, epilogue vectors in the accumulators' channel
// order) in a thread's scratch, then runs the kernel.
template <int T>
void depthwise7(const DepthwiseShape& s, const uint8_t* x, const int16_t* w, const TileEpilogue& e, uint8_t* y,
                int64_t m_begin, int64_t m_end) {
  constexpr int kQuads = T / 4;
  const int64_t c = s.channels, cp = (c + 15) / 16 * 16, blocks = (c + 31) / 32;
  auto tap_weight = [&](int64_t t, int64_t ch) -> int16_t {  // w: [tap / 2][cp][2] int16 pairs
    return ch < c ? w[((t / 2) * cp + ch) * 2 + t % 2] : int16_t{0};
  };
  thread_local std::vector<uint8_t> scratch;
  const int64_t wq_bytes = blocks * kQuads * 4 * 32, wl_bytes = blocks * 4 * 32, vec_bytes = blocks * 4 * 32;
  const size_t need = static_cast<size_t>(wq_bytes + wl_bytes + 3 * vec_bytes + 32);
  if (scratch.size() < need) scratch.resize(need);
  uint8_t* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(scratch.data()) + 31) & ~uintptr_t{31});
  auto* wq = reinterpret_cast<int8_t*>(base);
  auto* wl = reinterpret_cast<int16_t*>(base + wq_bytes);
  auto* nzcs = reinterpret_cast<int32_t*>(base + wq_bytes + wl_bytes);
  auto* mult = reinterpret_cast<float*>(base + wq_bytes + wl_bytes + vec_bytes);
  auto* bias = reinterpret_cast<float*>(base + wq_bytes + wl_bytes + 2 * vec_bytes);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    for (int j = 0; j < 4; ++j) {
      for (int i = 0; i < 8; ++i) {
        const int64_t ch = dw7_block_start(blk, c) + dw7_channel(j, i);
        for (int q = 0; q < kQuads; ++q) {
          for (int k = 0; k < 4; ++k) {
            wq[((blk * kQuads + q) * 4 + j) * 32 + i * 4 + k] = static_cast<int8_t>(tap_weight(4 * q + k, ch));
          }
        }
        wl[(blk * 4 + j) * 16 + 2 * i] = tap_weight(T - 1, ch);
        wl[(blk * 4 + j) * 16 + 2 * i + 1] = 0;
        const int64_t at = (blk * 4 + j) * 8 + i;
        const bool real = ch < c;
        nzcs[at] = real ? -e.input_zero_point * e.col_sums[ch] : 0;
        mult[at] = real ? e.multiplier[ch] : 0.0f;
        bias[at] = real ? e.bias[ch] : 0.0f;
      }
    }
  }
  const Dw7Layout L{blocks, wq, wl, nzcs, mult, bias};
  if (e.lo == -static_cast<float>(e.output_zero_point)) {
    depthwise7_taps<T, true>(s, x, L, e, y, m_begin, m_end);
  } else {
    depthwise7_taps<T, false>(s, x, L, e, y, m_begin, m_end);
  }
}

// fn(std::integral_constant<int, taps>) for the row kernels' sizes, 3x3 and 5x5; false for others.
template <class Fn>
bool with_row_taps(const DepthwiseShape& s, Fn&& fn) {
  const int64_t taps = s.kernel_h * s.kernel_w;
  if (taps == 9) {
    fn(std::integral_constant<int, 9>());
  } else if (taps == 25) {
    fn(std::integral_constant<int, 25>());
  } else {
    return false;
  }
  return true;
}

// The 7-bit kernels' depthwise_rows: 3x3 and 5x5 without a residual.
bool depthwise_rows7(const DepthwiseShape& s, const uint8_t* x, const DepthwiseWeights& w, const TileEpilogue& e,
                     uint8_t* y, int64_t m_begin, int64_t m_end) {
  if (e.residual != nullptr || e.input_zero_point >= 128) return false;
  return with_row_taps(s, [&](auto t) { depthwise7<decltype(t)::value>(s, x, w.pairs, e, y, m_begin, m_end); });
}

struct DotAvx2 {
  static __m256i dot_pairs(__m256i acc, __m256i x, __m256i w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
  }
};

// 3x3 and 5x5; the driver runs other sizes through depthwise_pixel.
bool depthwise_rows(const DepthwiseShape& s, const uint8_t* x, const DepthwiseWeights& w, const TileEpilogue& e,
                    uint8_t* y, int64_t m_begin, int64_t m_end) {
  return with_row_taps(
      s, [&](auto t) { depthwise_rows_taps<decltype(t)::value>(s, x, w.pairs, e, y, m_begin, m_end); });
}

GemmKernels make(bool seven_bit) {
  GemmKernels k{seven_bit ? gemm_tile<true> : gemm_tile<false>,
                16,
                {0, kCallRows, 0, 0, 0},
                4,
                1,
                nullptr,
                nullptr,
                ymm::depthwise_pixel<DotAvx2>};
  k.depthwise_rows = seven_bit ? depthwise_rows7 : depthwise_rows;
  if (seven_bit) k.indirect_tile = gemm_indirect_tile7;  // the driver's choice: only for inputs below 128
  if (!seven_bit) {
    k.widen_a = widen_rows;
    k.b_int16 = true;
  }
  return k;
}

const GemmKernels kSevenBitKernels = make(true);

GemmKernels make_with_seven_bit() {
  GemmKernels k = make(false);
  k.seven_bit = &kSevenBitKernels;
  return k;
}

const GemmKernels kKernels = make_with_seven_bit();

}  // namespace

const GemmKernels* gemm_kernels_avx2() { return &kKernels; }

}  // namespace tqx::kernels
