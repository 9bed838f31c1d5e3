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
#include <vector>

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

// The requantize epilogue of 16 channels (requantize8's float32 operations), its vectors loaded once
// per channel block: the output stores are uint8_t, which may alias anything, so fields read through
// `e` inside the pixel loop would be reloaded after every store.
struct Epilogue16 {
  __m256i zcs[2], yz, rz;
  __m256 mult[2], bias[2], lo, hi, rmult;
  Epilogue16(const TileEpilogue& e, int64_t c0) {
    const __m256i xz = _mm256_set1_epi32(e.input_zero_point);
    for (int h = 0; h < 2; ++h) {
      zcs[h] = _mm256_mullo_epi32(xz, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.col_sums + c0 + 8 * h)));
      mult[h] = _mm256_loadu_ps(e.multiplier + c0 + 8 * h);
      bias[h] = _mm256_loadu_ps(e.bias + c0 + 8 * h);
    }
    yz = _mm256_set1_epi32(e.output_zero_point);
    rz = _mm256_set1_epi32(e.residual_zero_point);
    lo = _mm256_set1_ps(e.lo);
    hi = _mm256_set1_ps(e.hi);
    rmult = _mm256_set1_ps(e.residual_multiplier);
  }
  __m256i apply(__m256i acc, int h, const uint8_t* residual) const {
    __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc, zcs[h])), mult[h]), bias[h]);
    if (residual != nullptr) {
      const __m256i r = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(residual)));
      v = _mm256_add_ps(v, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(r, rz)), rmult));
    }
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);  // max first: NaN -> lo, as the reference
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), yz);
  }
};

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
  const __m128i bytes = ymm::pack16(ep.apply(acc0, 0, res), ep.apply(acc1, 1, res ? res + 8 : nullptr));
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
  constexpr int64_t kSegment = 16;
  const int64_t c = s.channels, cp = (c + 15) / 16 * 16;
  int64_t off[T], dh[T], dw[T];
  for (int64_t kh = 0, t = 0; kh < s.kernel_h; ++kh) {
    for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t) {
      dh[t] = kh * s.dilation_h;
      dw[t] = kw * s.dilation_w;
      off[t] = (dh[t] * s.in_w + dw[t]) * c;
    }
  }
  const std::vector<uint8_t> zero_row(static_cast<size_t>(cp), static_cast<uint8_t>(e.input_zero_point));
  const int64_t last = s.in_w - 1 - (s.kernel_w - 1) * s.dilation_w + s.pad_w;
  const int64_t inner_hi = last < 0 ? 0 : std::min(s.out_w, last / s.stride_w + 1);
  const int64_t inner_lo = std::min(inner_hi, (s.pad_w + s.stride_w - 1) / s.stride_w);
  const int64_t step = s.stride_w * c;
  const uint8_t* p[kSegment][T];  // border pixels' tap pointers at channel 0
  for (int64_t m = m_begin; m < m_end;) {
    const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow0 = m % s.out_w;
    const int64_t count = std::min(kSegment, std::min(m_end, m - ow0 + s.out_w) - m);
    const int64_t ih0 = oh * s.stride_h - s.pad_h;
    const bool rows_inside = ih0 >= 0 && ih0 + (s.kernel_h - 1) * s.dilation_h < s.in_h;
    // Pixels [in_lo, in_hi) of the segment have windows inside the input; the others take pointers.
    int64_t in_lo = count, in_hi = count;
    if (rows_inside) {
      in_lo = std::clamp(inner_lo - ow0, int64_t{0}, count);
      in_hi = std::clamp(inner_hi - ow0, in_lo, count);
    }
    const uint8_t* const base = x + ((n * s.in_h + ih0) * s.in_w + ow0 * s.stride_w - s.pad_w) * c;
    for (int64_t j = 0; j < count; ++j) {
      if (j >= in_lo && j < in_hi) continue;
      const int64_t iw0 = (ow0 + j) * s.stride_w - s.pad_w;
      for (int t = 0; t < T; ++t) {
        const int64_t ih = ih0 + dh[t], iw = iw0 + dw[t];
        p[j][t] = ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w ? zero_row.data() : base + j * step + off[t];
      }
    }
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

// Other kernel sizes: one pixel at a time through depthwise_pixel.
void depthwise_rows_generic(const DepthwiseShape& s, const uint8_t* x, const int16_t* w, const TileEpilogue& e,
                            uint8_t* y, int64_t m_begin, int64_t m_end) {
  const uint8_t* tap_ptrs[kDepthwiseRowsMaxTaps];
  TileEpilogue te = e;
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
    int64_t t = 0;
    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
      for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t) {
        const int64_t iw = ow * s.stride_w - s.pad_w + kw * s.dilation_w;
        tap_ptrs[t] = ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w
                          ? nullptr
                          : x + ((n * s.in_h + ih) * s.in_w + iw) * s.channels;
      }
    }
    if (e.residual != nullptr) te.residual = e.residual + m * s.channels;
    ymm::depthwise_pixel<DotAvx2>(t, s.channels, tap_ptrs, w, te, y + m * s.channels);
  }
}

void depthwise_rows(const DepthwiseShape& s, const uint8_t* x, const int16_t* w, const TileEpilogue& e, uint8_t* y,
                    int64_t m_begin, int64_t m_end) {
  const int64_t taps = s.kernel_h * s.kernel_w;
  if (taps == 9) {
    depthwise_rows_taps<9>(s, x, w, e, y, m_begin, m_end);
  } else if (taps == 25) {
    depthwise_rows_taps<25>(s, x, w, e, y, m_begin, m_end);
  } else {
    depthwise_rows_generic(s, x, w, e, y, m_begin, m_end);
  }
}

GemmKernels make() {
  GemmKernels k{gemm_tile, 16, {0, kRows, 0, 0, 0}, 4, 1, nullptr, nullptr, ymm::depthwise_pixel<DotAvx2>};
  k.depthwise_rows = depthwise_rows;
  k.widen_a = widen_rows;
  return k;
}

const GemmKernels kKernels = make();

}  // namespace

const GemmKernels* gemm_kernels_avx2() { return &kKernels; }

}  // namespace tqx::kernels
