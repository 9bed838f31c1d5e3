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
struct Epilogue16 {
  __m256i zcs[2], rz, yz16;
  __m256 mult[2], bias[2], lo, hi, rmult;
  bool lower_by_pack;
  Epilogue16(const TileEpilogue& e, int64_t c0) {
    const __m256i xz = _mm256_set1_epi32(e.input_zero_point);
    for (int h = 0; h < 2; ++h) {
      zcs[h] = _mm256_mullo_epi32(xz, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.col_sums + c0 + 8 * h)));
      mult[h] = _mm256_loadu_ps(e.multiplier + c0 + 8 * h);
      bias[h] = _mm256_loadu_ps(e.bias + c0 + 8 * h);
    }
    rz = _mm256_set1_epi32(e.residual_zero_point);
    yz16 = _mm256_set1_epi16(static_cast<int16_t>(e.output_zero_point));
    lo = _mm256_set1_ps(e.lo);
    hi = _mm256_set1_ps(e.hi);
    rmult = _mm256_set1_ps(e.residual_multiplier);
    lower_by_pack = e.lo == -static_cast<float>(e.output_zero_point);
  }
  // Columns 8h..8h+7 of acc (sum x * w), before the zero point; residual: 8 bytes or null.
  __m256i apply(__m256i acc, int h, const uint8_t* residual) const {
    __m256 v = ymm::requantize8_value(acc, zcs[h], mult[h], bias[h], residual, rz, rmult);
    // max first where it is needed: max(NaN, lo) = lo, as the reference.
    v = lower_by_pack ? _mm256_min_ps(hi, v) : _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return _mm256_cvtps_epi32(v);
  }
  // 16 outputs in order from apply()'s two halves.
  __m128i pack(__m256i q0, __m256i q1) const {
    const __m256i p16 = _mm256_adds_epi16(_mm256_packs_epi32(q0, q1), yz16);  // [q0 0-3, q1 0-3 | q0 4-7, q1 4-7]
    const __m256i p8 = _mm256_packus_epi16(p16, p16);
    return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5)));
  }
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

// R rows x up to 16 columns; each accumulator lane is one output column (0-7, 8-15).
// kSeven = false: A rows of int16 (widen_rows) and B as int16 k-pairs; per k-pair two loads of B,
//   per row one broadcast of its two activations, two vpmaddwd and two vpaddd.
// kSeven = true (activations below 128): A rows of bytes and B's int8 k-groups; per k-group two
//   loads of B, per row one broadcast of four activations and two maddubs_into (3 instructions
//   per 32 products instead of 4).
// kHalf: a last block of at most 8 columns, whose upper half would only multiply zero weights.
// Not inlined: inside gemm_tile's loop GCC 12 kept the accumulators on the stack (a load and a
// store per vpaddd), at half the speed. a, lda and b are in bytes.
template <int R, bool kHalf, bool kSeven>
__attribute__((noinline)) void tile_rows(int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda,
                                         const int8_t* b, const Epilogue16& ep, const uint8_t* residual, uint8_t* y,
                                         int64_t ldy) {
  __m256i acc[R][2];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
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
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    const uint8_t* res = nullptr;
    alignas(16) uint8_t res_tmp[16];
    if (residual != nullptr) {
      res = residual + i * ldy;
      if (cols < 16) {  // only the tile's columns exist
        std::memset(res_tmp, 0, sizeof(res_tmp));
        std::memcpy(res_tmp, res, static_cast<size_t>(cols));
        res = res_tmp;
      }
    }
    const __m128i bytes = ep.pack(ep.apply(acc[i][0], 0, res), ep.apply(acc[i][1], 1, res ? res + 8 : nullptr));
    uint8_t* out = y + i * ldy;
    if (cols >= 16) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), bytes);
    } else {
      alignas(16) uint8_t tmp[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
      std::memcpy(out, tmp, static_cast<size_t>(cols));
    }
  }
}

using TileImpl = void (*)(int64_t, int64_t, const uint8_t*, int64_t, const int8_t*, const Epilogue16&, const uint8_t*,
                          uint8_t*, int64_t);

template <bool kHalf, bool kSeven, int... Rs>
TileImpl pick(int64_t rows, std::integer_sequence<int, Rs...>) {
  TileImpl out = nullptr;
  ((out = rows == Rs + 1 ? &tile_rows<Rs + 1, kHalf, kSeven> : out), ...);
  return out;
}

// Up to kCallRows rows in runs of kRows, the epilogue's vectors set up once per call. kSeven = false:
// a holds int16 rows from widen_rows and b one block of int16_blocks(); true: bytes and int8 blocks.
template <bool kSeven>
void gemm_tile(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda, const int8_t* b,
               int64_t /*b_stride*/, const TileEpilogue& e, uint8_t* y, int64_t ldy) {
  const Epilogue16 ep(e, 0);
  const bool half = cols <= 8;
  const TileImpl full = half ? &tile_rows<kRows, true, kSeven> : &tile_rows<kRows, false, kSeven>;
  for (int64_t r = 0; r < rows; r += kRows) {
    const int64_t n = std::min<int64_t>(kRows, rows - r);
    const uint8_t* res = e.residual != nullptr ? e.residual + r * ldy : nullptr;
    const TileImpl tile = n == kRows ? full
                          : half     ? pick<true, kSeven>(n, std::make_integer_sequence<int, kRows>())
                                     : pick<false, kSeven>(n, std::make_integer_sequence<int, kRows>());
    tile(cols, k_padded, a + r * lda, lda, b, ep, res, y + r * ldy, ldy);
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

struct DotAvx2 {
  static __m256i dot_pairs(__m256i acc, __m256i x, __m256i w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
  }
};

// 3x3 and 5x5; the driver runs other sizes through depthwise_pixel.
bool depthwise_rows(const DepthwiseShape& s, const uint8_t* x, const int16_t* w, const TileEpilogue& e, uint8_t* y,
                    int64_t m_begin, int64_t m_end) {
  const int64_t taps = s.kernel_h * s.kernel_w;
  if (taps == 9) {
    depthwise_rows_taps<9>(s, x, w, e, y, m_begin, m_end);
  } else if (taps == 25) {
    depthwise_rows_taps<25>(s, x, w, e, y, m_begin, m_end);
  } else {
    return false;
  }
  return true;
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
  k.depthwise_rows = depthwise_rows;
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
