// The int8 convolution driver: weight packing, im2col blocking and the dispatch to the per-ISA
// microkernels of kernels/gemm.h.
//
// Note [Packed weights]
// A convolution is a GEMM per group: rows are output pixels, the reduction runs over
// (kernel_h, kernel_w, in_c_per_group) and columns are the group's output channels. The
// microkernels multiply four uint8 activations by four int8 weights and add them into one int32
// lane (vpdpbusd, or its AVX2 emulation), so B is stored in k-groups of four: for each block of 16
// columns, k_padded / 4 groups of [16 columns][4 bytes], one 64-byte vector each. k is padded
// with zero weights to a multiple of 64 (AMX tiles reduce over 64 bytes; the vpdpbusd kernels
// stop at the next multiple of 4) and the columns with zero weights to a multiple of 16. The
// AMX kernels read 16 of these k-groups as one B tile, rows of 64 bytes.
// The input zero point is not subtracted inside the loop: acc = sum x * w - x_zp * sum w, with
// the column sums computed at packing time. Padding pixels are filled with x_zp, so they add
// nothing; the result equals the reference's sum (x - x_zp) * w exactly.
// Depthwise convolutions (one input and one output channel per group) are not GEMMs; their
// weights are stored per pair of consecutive taps as int16 (w[t], w[t+1]) per channel, which
// vpmaddwd / vpdpwssd turn into x[t] * w[t] + x[t+1] * w[t+1] in an int32 lane.
// The epilogue is the reference's float32 arithmetic, operation for operation, so every ISA gives
// the same bytes as conv2d_u8s8_nhwc_scalar.
#include "kernels/conv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>

#include "kernels/gemm.h"

namespace tqx::kernels {
namespace {

constexpr int64_t kRowBlock = 96;  // output pixels per im2col block (a multiple of every max_rows)

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

const GemmKernels* gemm_kernels_for(Isa isa) {
  if (isa >= Isa::kAMX) {
    if (const GemmKernels* k = gemm_kernels_amx()) return k;
  }
  if (isa >= Isa::kAVX512VNNI) {
    if (const GemmKernels* k = gemm_kernels_avx512_vnni()) return k;
  }
  // AVX-512 without VNNI runs the AVX2 kernels; AVX-VNNI is a separate feature (see isa.h).
  if (isa >= Isa::kAVXVNNI && isa_supported(Isa::kAVXVNNI)) {
    if (const GemmKernels* k = gemm_kernels_avx_vnni()) return k;
  }
  if (isa >= Isa::kAVX2) return gemm_kernels_avx2();
  return nullptr;
}


// True when |v| < 2^30 for every value requantize8 can compute in this call: |sum (x - x_zp) * w|
// is at most k * 255 * 128. Float rounding of the products cannot then reach 2^31, where
// vcvtps2dq would give INT32_MIN instead of a large value. An infinite multiplier, bias or
// residual multiplier fails; a NaN gives NaN values, which convert to INT32_MIN and so clamp to
// qmin, as the reference's clamp does.
bool requantize_fits_int32(const PackedConvWeights& w, const ConvEpilogue& e) {
  double m = 0.0, b = 0.0;
  for (int64_t c = 0; c < w.out_c; ++c) {
    m = std::max(m, std::fabs(static_cast<double>(e.multiplier[c])));
    b = std::max(b, std::fabs(static_cast<double>(e.bias[c])));
  }
  double bound = static_cast<double>(w.k) * 255.0 * 128.0 * m + b;
  if (e.residual != nullptr) bound += 255.0 * std::fabs(static_cast<double>(e.residual_multiplier));
  return bound < 1073741824.0;
}

}  // namespace

PreparedEpilogue prepare_epilogue(const PackedConvWeights& w, const ConvEpilogue& e) {
  const int64_t cout_g = w.out_c / w.groups;
  const int64_t stride = w.depthwise ? round_up(w.out_c, 16) : w.n_blocks * 16;
  const int64_t groups = w.depthwise ? 1 : w.groups, per = w.depthwise ? w.out_c : cout_g;
  PreparedEpilogue p{std::vector<int32_t>(groups * stride), std::vector<float>(groups * stride),
                     std::vector<float>(groups * stride), stride, requantize_fits_int32(w, e)};
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t c = 0; c < per; ++c) {
      p.col_sums[g * stride + c] = w.col_sums[g * per + c];
      p.multiplier[g * stride + c] = e.multiplier[g * per + c];
      p.bias[g * stride + c] = e.bias[g * per + c];
    }
  }
  return p;
}

namespace {

TileEpilogue tile_epilogue(const PreparedEpilogue& p, int64_t offset, const ConvEpilogue& e) {
  return TileEpilogue{p.col_sums.data() + offset,
                      p.multiplier.data() + offset,
                      p.bias.data() + offset,
                      e.input_zero_point,
                      e.output_zero_point,
                      static_cast<float>(e.qmin - e.output_zero_point),
                      static_cast<float>(e.qmax - e.output_zero_point),
                      nullptr,
                      e.residual_multiplier,
                      e.residual_zero_point,
                      p.int_clamp};
}

// memcpy / memset for the short runtime sizes of im2col (a handful to a few hundred bytes), inline:
// 16-byte moves with an overlapping last move instead of a library call per span.
inline void copy_short(uint8_t* dst, const uint8_t* src, int64_t n) {
  if (n >= 128) {
    std::memcpy(dst, src, static_cast<size_t>(n));
  } else if (n >= 16) {
    for (int64_t i = 0; i + 16 <= n; i += 16) __builtin_memcpy(dst + i, src + i, 16);
    __builtin_memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    __builtin_memcpy(dst, src, 8);
    __builtin_memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    __builtin_memcpy(dst, src, 4);
    __builtin_memcpy(dst + n - 4, src + n - 4, 4);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

inline void fill_short(uint8_t* dst, uint8_t v, int64_t n) {
  uint8_t pattern[16];
  __builtin_memset(pattern, v, 16);
  if (n >= 16) {
    for (int64_t i = 0; i + 16 <= n; i += 16) __builtin_memcpy(dst + i, pattern, 16);
    __builtin_memcpy(dst + n - 16, pattern, 16);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = v;
  }
}

// Rows [m, m + rows) of group g's im2col matrix, k_eff bytes each (zeros after the k real ones).
// With one group and no dilation, the kernel_w taps of a kernel row are adjacent pixels, so each
// kernel row is one copy (clipped at the image edges) rather than kernel_w; windows inside the
// input (most of them) copy their rows without per-row checks. Pixels advance without divisions.
//
// Runs of such windows along an output row whose kernel rows are short (the stems: 9 or 21 bytes)
// go through im2col_run, which has none of the per-pixel tests: at mobilenet's stem those tests and
// the pixel advance cost more than the copies.
// kShort: span < 16, one 16-byte move per kernel row, in order, each reaching past its span into
// bytes the next move (or the next pixel) overwrites; else 16 <= span <= 32, two overlapping moves.
// KH: the kernel height, or 0 for any (kernel_h). The zero padding after k (at most 16 bytes) is one
// 16-byte store: its reach past the pixel's k_eff bytes lands in the next pixel's row, written
// after it, or in the row of slack after the block (gemm_rows). Not inlined: inside gemm_rows,
// GCC kept the loop's pointers on the stack.
template <bool kShort, int KH>
__attribute__((noinline)) void im2col_run(int64_t count, int64_t kernel_h, int64_t span, int64_t k, int64_t k_eff,
                                          const uint8_t* src, int64_t col_step, int64_t row_step, uint8_t* dst) {
  static constexpr uint8_t kZeros[16] = {};
  const int64_t kh_n = KH > 0 ? KH : kernel_h;
  for (int64_t j = 0; j < count; ++j, src += col_step, dst += k_eff) {
    const uint8_t* s = src;
    uint8_t* d = dst;
#pragma GCC unroll 8
    for (int64_t kh = 0; kh < kh_n; ++kh, s += row_step, d += span) {
      __builtin_memcpy(d, s, 16);
      if constexpr (!kShort) __builtin_memcpy(d + span - 16, s + span - 16, 16);
    }
    if (k_eff > k) __builtin_memcpy(dst + k, kZeros, 16);  // the padded k has zero weights
  }
}

void im2col(const ConvShape& s, const PackedConvWeights& w, const uint8_t* x, int64_t g, int64_t m, int64_t rows,
            uint8_t zero, int64_t k_eff, uint8_t* out) {
  const int64_t cin_g = w.in_c_per_group, span = s.kernel_w * cin_g;
  const bool spans = s.groups == 1 && s.dilation_w == 1;
  const int64_t span_h = (s.kernel_h - 1) * s.dilation_h, span_w = (s.kernel_w - 1) * s.dilation_w;
  const int64_t row_step = s.dilation_h * s.in_w * s.in_c;
  const uint8_t* const x_end = x + s.batch * s.in_h * s.in_w * s.in_c;
  // Runs (im2col_run): short kernel rows, and the output columns whose windows are inside the input
  // horizontally, [ow_lo, ow_hi).
  const int run_kind = !spans || k_eff < 16 || k_eff - w.k > 16 ? 0 : span < 16 ? 1 : span <= 32 ? 2 : 0;
  const int64_t ow_lo = (s.pad_w + s.stride_w - 1) / s.stride_w;
  const int64_t ow_hi = s.in_w - 1 - span_w + s.pad_w < 0 ? 0 : (s.in_w - 1 - span_w + s.pad_w) / s.stride_w + 1;
  const int64_t col_step = s.stride_w * s.in_c;
  const int64_t reach = (s.kernel_h - 1) * row_step + std::max<int64_t>(16, span);  // bytes a pixel's moves read
  int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = out + r * k_eff;
    const int64_t ih0 = oh * s.stride_h - s.pad_h, iw0 = ow * s.stride_w - s.pad_w;
    if (run_kind != 0 && ih0 >= 0 && ih0 + span_h < s.in_h && ow >= ow_lo && ow < ow_hi) {
      const uint8_t* src = x + ((n * s.in_h + ih0) * s.in_w + iw0) * s.in_c;
      // Pixels of the run, none of whose moves may read past x.
      const int64_t fit = x_end - src >= reach ? (x_end - src - reach) / col_step + 1 : 0;
      const int64_t count = std::min({rows - r, ow_hi - ow, fit});
      if (count > 0) {
        const auto run = run_kind == 1 ? (s.kernel_h == 3 ? im2col_run<true, 3> : im2col_run<true, 0>)
                                       : (s.kernel_h == 7 ? im2col_run<false, 7> : im2col_run<false, 0>);
        run(count, s.kernel_h, span, w.k, k_eff, src, col_step, row_step, dst);
        r += count - 1;
        ow += count;
        if (ow == s.out_w) {
          ow = 0;
          if (++oh == s.out_h) {
            oh = 0;
            ++n;
          }
        }
        continue;
      }
    }
    if (spans && ih0 >= 0 && ih0 + span_h < s.in_h && iw0 >= 0 && iw0 + span_w < s.in_w) {
      const uint8_t* src = x + ((n * s.in_h + ih0) * s.in_w + iw0) * s.in_c;
      if (span < 16 && k_eff >= 16 && src + (s.kernel_h - 1) * row_step + 16 <= x_end) {
        // Short kernel rows (mobilenet's 3x3 stem: 9 bytes): one 16-byte move each, in order, so
        // that each overwrites the bytes the one before wrote past its row. The last one's reach
        // past this pixel's k bytes (under 16) is overwritten by the zero padding below and the next
        // pixel, or lands in the slack of `out` (gemm_rows allocates a row of k_eff >= 16 beyond the block).
        for (int64_t kh = 0; kh < s.kernel_h; ++kh, dst += span, src += row_step) __builtin_memcpy(dst, src, 16);
      } else if (span >= 16 && span <= 32) {  // the stem's 7 x 3 channels: two overlapping 16-byte moves
        for (int64_t kh = 0; kh < s.kernel_h; ++kh, dst += span, src += row_step) {
          __builtin_memcpy(dst, src, 16);
          __builtin_memcpy(dst + span - 16, src + span - 16, 16);
        }
      } else {
        for (int64_t kh = 0; kh < s.kernel_h; ++kh, dst += span, src += row_step) copy_short(dst, src, span);
      }
    } else {
      for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
        const int64_t ih = ih0 + kh * s.dilation_h;
        const uint8_t* xrow = x + (n * s.in_h + ih) * s.in_w * s.in_c + g * cin_g;
        if (ih < 0 || ih >= s.in_h) {
          fill_short(dst, zero, span);
          dst += span;
        } else if (spans) {
          const int64_t lo = std::max<int64_t>(0, -iw0), hi = std::min<int64_t>(s.kernel_w, s.in_w - iw0);
          if (lo > 0) fill_short(dst, zero, lo * cin_g);
          if (hi > lo) copy_short(dst + lo * cin_g, xrow + (iw0 + lo) * s.in_c, (hi - lo) * cin_g);
          if (hi < s.kernel_w)
            fill_short(dst + std::max(hi, lo) * cin_g, zero, (s.kernel_w - std::max(hi, lo)) * cin_g);
          dst += span;
        } else {
          for (int64_t kw = 0; kw < s.kernel_w; ++kw, dst += cin_g) {
            const int64_t iw = iw0 + kw * s.dilation_w;
            if (iw < 0 || iw >= s.in_w) {
              fill_short(dst, zero, cin_g);
            } else {
              copy_short(dst, xrow + iw * s.in_c, cin_g);
            }
          }
        }
      }
    }
    fill_short(dst, 0, k_eff - w.k);  // the padded k has zero weights
    if (++ow == s.out_w) {
      ow = 0;
      if (++oh == s.out_h) {
        oh = 0;
        ++n;
      }
    }
  }
}

// The indirection buffer of rows [m, m + rows) for GemmIndirectTileFn: per output pixel, the input
// pixel (channel 0) of each tap, or `zero` where the tap falls in the padding. Pixels whose window
// lies inside the input take the taps' fixed offsets from the window's first pixel.
void build_indirection(const ConvShape& s, const uint8_t* x, const uint8_t* zero, const int64_t* offsets, int64_t m,
                       int64_t rows, const uint8_t** out) {
  const int64_t taps = s.kernel_h * s.kernel_w;
  const int64_t span_h = (s.kernel_h - 1) * s.dilation_h, span_w = (s.kernel_w - 1) * s.dilation_w;
  int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
  for (int64_t r = 0; r < rows; ++r, out += taps) {
    const int64_t ih0 = oh * s.stride_h - s.pad_h, iw0 = ow * s.stride_w - s.pad_w;
    const uint8_t* image = x + n * s.in_h * s.in_w * s.in_c;
    if (ih0 >= 0 && ih0 + span_h < s.in_h && iw0 >= 0 && iw0 + span_w < s.in_w) {
      const uint8_t* base = image + (ih0 * s.in_w + iw0) * s.in_c;
      for (int64_t t = 0; t < taps; ++t) out[t] = base + offsets[t];
    } else {
      for (int64_t kh = 0, t = 0; kh < s.kernel_h; ++kh) {
        const int64_t ih = ih0 + kh * s.dilation_h;
        for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t) {
          const int64_t iw = iw0 + kw * s.dilation_w;
          out[t] = ih >= 0 && ih < s.in_h && iw >= 0 && iw < s.in_w ? image + (ih * s.in_w + iw) * s.in_c : zero;
        }
      }
    }
    if (++ow == s.out_w) {
      ow = 0;
      if (++oh == s.out_h) {
        oh = 0;
        ++n;
      }
    }
  }
}

// Calls the kernel's begin/end hooks (AMX tile configuration) around one thread's tiles.
struct TileSession {
  explicit TileSession(const GemmKernels& k) : k_(k) {
    if (k_.begin != nullptr) k_.begin();
  }
  ~TileSession() {
    if (k_.end != nullptr) k_.end();
  }
  TileSession(const TileSession&) = delete;
  TileSession& operator=(const TileSession&) = delete;

 private:
  const GemmKernels& k_;
};

// Calls group(cols, n0, epilogue, out) for each column group of group g over the rows [mb, mb +
// rows) (groups of the kernel's width), the epilogue's residual at row mb and its prefetch range the
// next column group's weights (TileEpilogue::prefetch) in the first block of rows only, after which
// they are in cache. Contiguous: the packed blocks of a group follow each other, and the next
// group's first block follows this group's last.
template <typename Group>
void for_each_column_group(const GemmKernels& k, const ConvShape& s, const PackedConvWeights& w,
                           const PreparedEpilogue& pe, const ConvEpilogue& e, int64_t g, int64_t mb, bool first_block,
                           uint8_t* y, const Group& group) {
  const int64_t cout_g = w.out_c / w.groups;
  for (int64_t n0 = 0; n0 < cout_g; n0 += k.max_cols) {
    const int64_t cols = std::min(k.max_cols, cout_g - n0);
    TileEpilogue te = tile_epilogue(pe, g * pe.group_stride + n0, e);
    const int64_t col0 = g * cout_g + n0;
    if (first_block && !k.b_int16 && (n0 + cols < cout_g || g + 1 < w.groups)) {
      const int64_t block = w.k_alloc * 16, next_block = g * w.n_blocks + (n0 + cols + 15) / 16;
      const int64_t left = w.groups * w.n_blocks - next_block;
      te.prefetch = reinterpret_cast<const int8_t*>(w.packed.data()) + next_block * block;
      te.prefetch_end = te.prefetch + std::min(left, k.max_cols / 16) * block;
    }
    if (e.residual != nullptr) te.residual = e.residual + mb * s.out_c + col0;
    group(cols, n0, te, y + mb * s.out_c + col0);
  }
}

// Calls tile(r, rows_here, cols, n0, epilogue, out) for each output tile of group g over the rows
// [mb, mb + rows): column groups as above, row runs of the kernel's height for that width.
template <typename Tile>
void for_each_tile(const GemmKernels& k, const ConvShape& s, const PackedConvWeights& w, const PreparedEpilogue& pe,
                   const ConvEpilogue& e, int64_t g, int64_t mb, int64_t rows, bool first_block, uint8_t* y,
                   const Tile& tile) {
  for_each_column_group(k, s, w, pe, e, g, mb, first_block, y,
                        [&](int64_t cols, int64_t n0, const TileEpilogue& group_epilogue, uint8_t* out) {
    const int64_t max_rows = k.max_rows[(cols + 15) / 16];
    // Tiles of nearly equal height: 49 rows (a 7x7 map) as 4 x 6 + 5 x 5 rather than 8 x 6 + 1, whose
    // one-row tile streams all of B for a sixth of a tile's work. Not for kernels that read rows in
    // aligned groups (AMX), whose tiles must start at multiples of their height within the block.
    // (GemmKernels::tiles splits the same way.)
    const int64_t tiles = (rows + max_rows - 1) / max_rows;
    const int64_t base = k.row_align == 1 ? rows / tiles : max_rows, taller = k.row_align == 1 ? rows % tiles : 0;
    // The prefetch range in slices over the tiles after the first (which streams this group's own
    // weights), or over the only tile.
    const int8_t* const next = group_epilogue.prefetch;
    const int64_t next_bytes = next == nullptr ? 0 : group_epilogue.prefetch_end - next;
    const int64_t slices = std::max<int64_t>(1, tiles - 1);
    TileEpilogue te = group_epilogue;
    for (int64_t t = 0, r = 0; t < tiles; ++t) {
      const int64_t n = std::min(base + (t < taller ? 1 : 0), rows - r);
      if (next != nullptr && (t > 0 || tiles == 1)) {
        const int64_t i = tiles == 1 ? 0 : t - 1;
        te.prefetch = next + next_bytes * i / slices;
        te.prefetch_end = next + next_bytes * (i + 1) / slices;
      } else {
        te.prefetch = te.prefetch_end = nullptr;
      }
      if (e.residual != nullptr) te.residual = group_epilogue.residual + r * s.out_c;
      tile(r, n, cols, n0, te, out + r * s.out_c);
      r += n;
    }
  });
}

// Convolutions whose per-group input channels fill whole k-groups: the tiles read the input through
// an indirection buffer, with no im2col copy.
void gemm_rows_indirect(const GemmKernels& k, const ConvShape& s, const PackedConvWeights& w, const uint8_t* x,
                        const ConvEpilogue& e, const PreparedEpilogue& pe, uint8_t* y, int64_t m_begin, int64_t m_end) {
  const int64_t cin_g = w.in_c_per_group, b_stride = w.k_alloc * 16;
  const int64_t taps = s.kernel_h * s.kernel_w;
  thread_local std::vector<const uint8_t*> pointers;
  thread_local std::vector<uint8_t> zero;
  pointers.resize(static_cast<size_t>(kRowBlock * taps));
  zero.assign(static_cast<size_t>(s.in_c), static_cast<uint8_t>(e.input_zero_point));
  std::vector<int64_t> offsets(static_cast<size_t>(taps));
  for (int64_t kh = 0, t = 0; kh < s.kernel_h; ++kh) {
    for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t) {
      offsets[t] = (kh * s.dilation_h * s.in_w + kw * s.dilation_w) * s.in_c;
    }
  }
  const auto* packed = reinterpret_cast<const int8_t*>(w.packed.data());
  TileSession session(k);
  for (int64_t mb = m_begin; mb < m_end; mb += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, m_end - mb);
    build_indirection(s, x, zero.data(), offsets.data(), mb, rows, pointers.data());
    for (int64_t g = 0; g < w.groups; ++g) {
      const int8_t* bg = packed + g * w.n_blocks * b_stride;
      for_each_tile(k, s, w, pe, e, g, mb, rows, mb == m_begin, y,
                    [&](int64_t r, int64_t n, int64_t cols, int64_t n0, const TileEpilogue& te, uint8_t* out) {
                      k.indirect_tile(n, cols, taps, cin_g, pointers.data() + r * taps, g * cin_g,
                                      bg + n0 / 16 * b_stride, b_stride, te, out, s.out_c);
                    });
    }
  }
}

// The B array the kernels read: the int8 blocks, or their int16 k-pairs for b_int16 kernels.
const int8_t* gemm_weights(const GemmKernels& k, const PackedConvWeights& w) {
  return k.b_int16 ? reinterpret_cast<const int8_t*>(w.int16_blocks()) : reinterpret_cast<const int8_t*>(w.packed.data());
}

// True when the first k bytes of each of `rows` rows (at a + i * lda) are all below 128.
bool rows_below_128(const uint8_t* a, int64_t rows, int64_t k, int64_t lda) {
  if (rows > 1 && lda == k) return rows_below_128(a, 1, rows * k, 0);  // one run: no per-row loop
  uint8_t any = 0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < k; ++j) any |= a[i * lda + j];  // vectorized by the compiler
  }
  return any < 128;
}

void gemm_rows(const GemmKernels& k, const ConvShape& s, const PackedConvWeights& w, const uint8_t* x,
               const ConvEpilogue& e, const PreparedEpilogue& pe, uint8_t* y, int64_t m_begin, int64_t m_end) {
  const int64_t k_eff = round_up(w.k, k.k_align);
  // A 1x1 stride-1 convolution reads its rows straight from x when they are whole k-steps long.
  const bool direct = s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
                      s.pad_w == 0 && w.groups == 1 && s.in_c % k.k_align == 0;
  const int64_t pixels = s.batch * s.out_h * s.out_w;
  if (!direct && k.indirect_tile != nullptr && w.in_c_per_group % k.k_align == 0) {
    gemm_rows_indirect(k, s, w, x, e, pe, y, m_begin, m_end);
    return;
  }
  thread_local std::vector<uint8_t> scratch;
  scratch.resize(std::max(scratch.size(), static_cast<size_t>((kRowBlock + k.row_align) * k_eff)));
  thread_local std::vector<int16_t> scratch16;  // kernels that read A as int16 (widen_a)
  if (k.widen_a != nullptr) scratch16.resize(std::max(scratch16.size(), static_cast<size_t>(kRowBlock * k_eff)));
  // The widened rows are read once per column block: fewer rows per block for long k, so that they
  // stay in L2 (about 96 KiB) with the weights, in runs of the kernel's tile height.
  const int64_t row_block =
      k.widen_a == nullptr ? kRowBlock : std::clamp<int64_t>((96 * 1024 / (2 * k_eff)) / 6 * 6, 6, kRowBlock);
  // 7-bit activations (the x86 preset's) may take other kernels (GemmKernels::seven_bit), chosen per
  // block from its A rows, so that a value beyond the calibrated range sends only its blocks to k.
  // Direct blocks are scanned just before their tiles read them (in cache then; a pass over all of
  // x first read it from L3 twice in mobilenet_v2's large layers); im2col blocks hold each input byte
  // up to kernel_h * kernel_w times, so for them one pass over x decides for all blocks when it can.
  const bool may_narrow = k.seven_bit != nullptr && e.input_zero_point < 128;
  const bool all_narrow =
      may_narrow && !direct && rows_below_128(x, 1, s.batch * s.in_h * s.in_w * s.in_c, 0);
  // With the whole input below 128, the 7-bit kernels' implicit GEMM (AVX2) needs no im2col copy.
  if (all_narrow && k.seven_bit->indirect_tile != nullptr && w.in_c_per_group % k.seven_bit->k_align == 0) {
    gemm_rows_indirect(*k.seven_bit, s, w, x, e, pe, y, m_begin, m_end);
    return;
  }
  TileSession session(k);
  for (int64_t mb = m_begin; mb < m_end; mb += row_block) {
    const int64_t rows = std::min(row_block, m_end - mb);
    // The kernel may read up to row_align - 1 rows past the block; past the end of x that goes
    // through the scratch copy.
    const bool copy = !direct || mb + round_up(rows, k.row_align) > pixels;
    for (int64_t g = 0; g < w.groups; ++g) {
      const uint8_t* a = x + mb * s.in_c;
      int64_t lda = s.in_c;
      if (copy) {
        im2col(s, w, x, g, mb, rows, static_cast<uint8_t>(e.input_zero_point), k_eff, scratch.data());
        a = scratch.data();
        lda = k_eff;
      }
      const GemmKernels& kb = all_narrow || (may_narrow && rows_below_128(a, rows, k_eff, lda)) ? *k.seven_bit : k;
      if (kb.widen_a != nullptr) {
        kb.widen_a(rows, k_eff, a, lda, scratch16.data());
        a = reinterpret_cast<const uint8_t*>(scratch16.data());
        lda = k_eff * static_cast<int64_t>(sizeof(int16_t));
      }
      const int64_t b_stride = w.k_alloc * 16 * (kb.b_int16 ? static_cast<int64_t>(sizeof(int16_t)) : 1);
      const int8_t* bg = gemm_weights(kb, w) + g * w.n_blocks * b_stride;
      if (kb.tiles != nullptr && kb.row_align == 1) {
        for_each_column_group(kb, s, w, pe, e, g, mb, mb == m_begin, y,
                              [&](int64_t cols, int64_t n0, const TileEpilogue& te, uint8_t* out) {
                                kb.tiles(rows, cols, k_eff, a, lda, bg + n0 / 16 * b_stride, b_stride, te, out, s.out_c);
                              });
      } else {
        for_each_tile(kb, s, w, pe, e, g, mb, rows, mb == m_begin, y,
                      [&](int64_t r, int64_t n, int64_t cols, int64_t n0, const TileEpilogue& te, uint8_t* out) {
                        kb.tile(n, cols, k_eff, a + r * lda, lda, bg + n0 / 16 * b_stride, b_stride, te, out, s.out_c);
                      });
      }
    }
  }
}

void depthwise_rows(const GemmKernels& k, const ConvShape& s, const PackedConvWeights& w, const uint8_t* x,
                    const ConvEpilogue& e, const PreparedEpilogue& pe, uint8_t* y, int64_t m_begin, int64_t m_end) {
  TileEpilogue te = tile_epilogue(pe, 0, e);
  if (k.depthwise_rows != nullptr && s.kernel_h * s.kernel_w <= kDepthwiseRowsMaxTaps) {
    te.residual = e.residual;
    const DepthwiseShape ds{s.in_h,     s.in_w,     s.in_c,  s.out_h, s.out_w,      s.kernel_h,  s.kernel_w,
                            s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dilation_h, s.dilation_w};
    const DepthwiseWeights wp{reinterpret_cast<const int16_t*>(w.packed.data()),
                              k.depthwise_quads ? w.depthwise_quads() : nullptr};
    // 7-bit activations may take the narrow kernels' depthwise (AVX2: vpmaddubsw) where every input
    // row a pixel reads is below 128 (it declines what it does not take: a residual, say). One pass
    // over the input rows this call reads marks them; runs of output rows go through one kernel or
    // the other by their windows' rows, so a value beyond the calibrated range (a byte above 127)
    // sends only the rows that read it to the int16 kernel. Usually the whole call is one run.
    if (k.seven_bit != nullptr && k.seven_bit->depthwise_rows != nullptr && e.input_zero_point < 128) {
      const int64_t plane = s.out_h * s.out_w, row = s.in_w * s.in_c;
      auto rows_of = [&](int64_t oy) {  // input rows [lo, hi) of output row oy, clipped to the image
        const int64_t lo = oy * s.stride_h - s.pad_h;
        return std::pair<int64_t, int64_t>{std::max<int64_t>(0, lo),
                                           std::min(s.in_h, lo + (s.kernel_h - 1) * s.dilation_h + 1)};
      };
      const int64_t n0 = m_begin / plane, n1 = (m_end - 1) / plane;
      const int64_t r0 = n0 * s.in_h + rows_of(m_begin % plane / s.out_w).first;
      const int64_t r1 = n1 * s.in_h + std::max<int64_t>(0, rows_of((m_end - 1) % plane / s.out_w).second);
      thread_local std::vector<uint8_t> clean;  // per input row from image n0's first
      clean.assign(static_cast<size_t>((n1 - n0 + 1) * s.in_h), 0);
      for (int64_t r = r0; r < r1; ++r) clean[r - n0 * s.in_h] = rows_below_128(x + r * row, 1, row, 0);
      auto narrow = [&](int64_t px) {  // whether output pixel px's window rows are all clean
        const auto [lo, hi] = rows_of(px % plane / s.out_w);
        for (int64_t r = lo; r < hi; ++r) {
          if (!clean[(px / plane - n0) * s.in_h + r]) return false;
        }
        return true;
      };
      bool taken = true;
      for (int64_t m = m_begin; m < m_end && taken;) {
        const bool seven = narrow(m);
        int64_t end = std::min(m_end, (m / s.out_w + 1) * s.out_w);
        while (end < m_end && narrow(end) == seven) end = std::min(m_end, end + s.out_w);
        taken = (seven && k.seven_bit->depthwise_rows(ds, x, wp, te, y, m, end)) ||
                k.depthwise_rows(ds, x, wp, te, y, m, end);
        m = end;
      }
      if (taken) return;  // else neither kernel takes this shape: the per-pixel loop below redoes all
    }
    if (k.depthwise_rows(ds, x, wp, te, y, m_begin, m_end)) return;
    te.residual = nullptr;
  }
  const int64_t taps = s.kernel_h * s.kernel_w;
  std::vector<const uint8_t*> tap_ptrs(static_cast<size_t>(taps));
  const auto* wp = reinterpret_cast<const int16_t*>(w.packed.data());
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
    int64_t t = 0;
    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
      for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t) {
        const int64_t iw = ow * s.stride_w - s.pad_w + kw * s.dilation_w;
        tap_ptrs[t] =
            ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w ? nullptr : x + ((n * s.in_h + ih) * s.in_w + iw) * s.in_c;
      }
    }
    if (e.residual != nullptr) te.residual = e.residual + m * s.out_c;
    k.depthwise(taps, s.out_c, tap_ptrs.data(), wp, te, y + m * s.out_c);
  }
}

}  // namespace

void widen_packed_weights(const int8_t* packed, int64_t blocks, int64_t k_alloc, int16_t* out) {
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t g = 0; g < k_alloc / 4; ++g) {
      const int8_t* src = packed + (b * k_alloc / 4 + g) * 64;  // [16 columns][4 k]
      int16_t* pair = out + (b * k_alloc / 2 + 2 * g) * 32;     // two [16 columns][2 k]
      for (int64_t c = 0; c < 16; ++c) {
        pair[c * 2] = src[c * 4];
        pair[c * 2 + 1] = src[c * 4 + 1];
        pair[32 + c * 2] = src[c * 4 + 2];
        pair[32 + c * 2 + 1] = src[c * 4 + 3];
      }
    }
  }
}

DepthwiseGeometry depthwise_geometry(const DepthwiseShape& s) {
  DepthwiseGeometry g{};
  g.taps = s.kernel_h * s.kernel_w;
  for (int64_t kh = 0, t = 0; kh < s.kernel_h; ++kh) {
    for (int64_t kw = 0; kw < s.kernel_w; ++kw, ++t) {
      g.dh[t] = kh * s.dilation_h;
      g.dw[t] = kw * s.dilation_w;
      g.off[t] = (g.dh[t] * s.in_w + g.dw[t]) * s.channels;
    }
  }
  const int64_t last = s.in_w - 1 - (s.kernel_w - 1) * s.dilation_w + s.pad_w;
  g.inner_hi = last < 0 ? 0 : std::min(s.out_w, last / s.stride_w + 1);
  g.inner_lo = std::min(g.inner_hi, (s.pad_w + s.stride_w - 1) / s.stride_w);
  return g;
}

DepthwiseSegment depthwise_segment(const DepthwiseShape& s, const DepthwiseGeometry& g, const uint8_t* x,
                                   const uint8_t* zero_row, int64_t m, int64_t m_end,
                                   const uint8_t* (*p)[kDepthwiseRowsMaxTaps]) {
  const int64_t c = s.channels;
  const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow0 = m % s.out_w;
  DepthwiseSegment seg{};
  seg.count = std::min(kDepthwiseSegment, std::min(m_end, m - ow0 + s.out_w) - m);
  const int64_t ih0 = oh * s.stride_h - s.pad_h;
  seg.in_lo = seg.in_hi = seg.count;
  if (ih0 >= 0 && ih0 + (s.kernel_h - 1) * s.dilation_h < s.in_h) {
    seg.in_lo = std::clamp(g.inner_lo - ow0, int64_t{0}, seg.count);
    seg.in_hi = std::clamp(g.inner_hi - ow0, seg.in_lo, seg.count);
  }
  seg.base = x + ((n * s.in_h + ih0) * s.in_w + ow0 * s.stride_w - s.pad_w) * c;
  const int64_t step = s.stride_w * c;
  for (int64_t j = 0; j < seg.count; ++j) {
    if (j >= seg.in_lo && j < seg.in_hi) continue;
    const int64_t iw0 = (ow0 + j) * s.stride_w - s.pad_w;
    for (int64_t t = 0; t < g.taps; ++t) {
      const int64_t ih = ih0 + g.dh[t], iw = iw0 + g.dw[t];
      p[j][t] = ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w ? zero_row : seg.base + j * step + g.off[t];
    }
  }
  return seg;
}

const int16_t* PackedConvWeights::int16_blocks() const {
  std::call_once(int16_->once, [this] {
    const int64_t blocks = groups * n_blocks;
    int16_->data = AlignedBytes(static_cast<size_t>(blocks * k_alloc * 16) * sizeof(int16_t));
    widen_packed_weights(reinterpret_cast<const int8_t*>(packed.data()), blocks, k_alloc,
                         reinterpret_cast<int16_t*>(int16_->data.data()));
  });
  return reinterpret_cast<const int16_t*>(int16_->data.data());
}

const int8_t* PackedConvWeights::depthwise_quads() const {
  const int64_t taps = kernel_h * kernel_w;
  if (!depthwise || (taps != 9 && taps != 25)) return nullptr;
  std::call_once(quads_->once, [this, taps] {
    const int64_t groups = (taps + 3) / 4, per_block = groups + (taps == 9 ? 18 : 0);
    const int64_t blocks = (out_c + 15) / 16;
    quads_->data = AlignedBytes(static_cast<size_t>(blocks * per_block * 64));
    auto* q = reinterpret_cast<int8_t*>(quads_->data.data());
    for (int64_t c = 0; c < out_c; ++c) {
      int8_t* blk = q + c / 16 * per_block * 64 + 4 * (c % 16);
      for (int64_t t = 0; t < taps; ++t) {
        const int8_t v = ohwi[c * taps + t];
        blk[t / 4 * 64 + t % 4] = v;
        for (int64_t d = -3; taps == 9 && d <= 2; ++d) {  // kernel row t / 3 shifted by d: byte i = tap i + d
          const int64_t i = t % 3 - d;
          if (i >= 0 && i < 4) blk[(groups + 6 * (t / 3) + d + 3) * 64 + i] = v;
        }
      }
    }
  });
  return reinterpret_cast<const int8_t*>(quads_->data.data());
}

AlignedBytes::AlignedBytes(size_t n) : n_(n) {
  const size_t bytes = std::max<size_t>(64, (n + 63) / 64 * 64);
  p_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
  if (!p_) throw std::bad_alloc();
  std::memset(p_.get(), 0, bytes);
}

PackedConvWeights pack_conv_weights(const int8_t* ohwi, int64_t out_c, int64_t kernel_h, int64_t kernel_w,
                                    int64_t in_c_per_group, int64_t groups) {
  PackedConvWeights p;
  p.out_c = out_c;
  p.kernel_h = kernel_h;
  p.kernel_w = kernel_w;
  p.in_c_per_group = in_c_per_group;
  p.groups = groups;
  p.k = kernel_h * kernel_w * in_c_per_group;
  p.ohwi.assign(ohwi, ohwi + out_c * p.k);
  p.col_sums.assign(static_cast<size_t>(out_c), 0);
  for (int64_t oc = 0; oc < out_c; ++oc) {
    for (int64_t i = 0; i < p.k; ++i) p.col_sums[oc] += ohwi[oc * p.k + i];
  }
  p.depthwise = groups == out_c && in_c_per_group == 1;
  if (p.depthwise) {
    const int64_t taps = kernel_h * kernel_w, pairs = (taps + 1) / 2, cp = round_up(out_c, 16);
    p.packed = AlignedBytes(static_cast<size_t>(pairs * cp * 2) * sizeof(int16_t));
    auto* dst = reinterpret_cast<int16_t*>(p.packed.data());
    for (int64_t t = 0; t < taps; ++t) {
      for (int64_t c = 0; c < out_c; ++c) dst[((t / 2) * cp + c) * 2 + t % 2] = ohwi[c * taps + t];
    }
    return p;
  }
  const int64_t cout_g = out_c / groups;
  p.k_padded = round_up(p.k, 4);
  p.k_alloc = round_up(p.k, 64);
  p.n_blocks = (cout_g + 15) / 16;
  const int64_t k4 = p.k_alloc / 4;
  p.packed = AlignedBytes(static_cast<size_t>(groups * p.n_blocks * k4 * 64));
  auto* dst = reinterpret_cast<int8_t*>(p.packed.data());
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t c = 0; c < cout_g; ++c) {
      const int8_t* src = ohwi + (g * cout_g + c) * p.k;
      int8_t* blk = dst + (g * p.n_blocks + c / 16) * k4 * 64;
      for (int64_t i = 0; i < p.k; ++i) blk[(i / 4) * 64 + (c % 16) * 4 + i % 4] = src[i];
    }
  }
  return p;
}

void conv2d_u8s8_nhwc_packed(const ConvShape& s, const PackedConvWeights& w, const uint8_t* x, const ConvEpilogue& e,
                             uint8_t* y, int64_t m_begin, int64_t m_end, Isa isa, const PreparedEpilogue* prepared) {
  if (m_begin >= m_end) return;
  const GemmKernels* k = gemm_kernels_for(isa);
  // A few rows (a linear layer at batch 1) fill a fraction of an AMX tile: vpdpbusd is faster there.
  if (k != nullptr && k->row_align > 1 && m_end - m_begin < k->row_align) {
    if (const GemmKernels* v = gemm_kernels_avx512_vnni()) k = v;
  }
  if (k == nullptr) {
    conv2d_u8s8_nhwc_scalar_rows(s, x, w.ohwi.data(), e, y, m_begin, m_end);
    return;
  }
  PreparedEpilogue local;
  if (prepared == nullptr) {
    local = prepare_epilogue(w, e);
    prepared = &local;
  }
  if (w.depthwise) {
    depthwise_rows(*k, s, w, x, e, *prepared, y, m_begin, m_end);
  } else {
    gemm_rows(*k, s, w, x, e, *prepared, y, m_begin, m_end);
  }
}

void conv2d_u8s8_nhwc(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvEpilogue& e, uint8_t* y) {
  const PackedConvWeights p = pack_conv_weights(w, s.out_c, s.kernel_h, s.kernel_w, s.in_c / s.groups, s.groups);
  conv2d_u8s8_nhwc_packed(s, p, x, e, y, 0, s.batch * s.out_h * s.out_w, active_isa());
}

// Note [Conv pairs]
// mobilenet-style blocks widen the channels with a 1x1 convolution and filter them with a depthwise
// one. At 112x112 the widened tensor (96 channels, 1.2 MB) is larger than L2: the 1x1 layer writes
// it out and the depthwise layer reads it back from L3 or memory, which in a whole model took those
// two layers 1.5-1.9x their time on cache-resident data. conv2d_pair instead runs the depthwise
// layer's output rows in bands: a band's input rows come from the 1x1 kernel into a buffer of about
// kConvPairBandBytes, and the depthwise kernel reads them while they are in cache. Consecutive bands
// overlap by the kernel's height less the stride; those rows move to the buffer's start instead of
// being recomputed, so each first-conv row is computed once per call (and once more at the start of
// a thread's range). Both kernels run on sub-images, as for any pixel range: the first on rows
// [lo, hi) of an image, the second on those rows with its padding above reduced by the rows the band
// starts below the image's top. Every output byte is computed by the same kernels from the same
// bytes as in the two separate calls.
bool conv2d_pair_u8s8_nhwc_packed(const ConvStep& first, const ConvStep& second, const uint8_t* x, uint8_t* y,
                                  int64_t row_begin, int64_t row_end, Isa isa, int64_t band_bytes) {
  const ConvShape& f = first.shape;
  const ConvShape& s = second.shape;
  const bool pointwise = f.kernel_h == 1 && f.kernel_w == 1 && f.stride_h == 1 && f.stride_w == 1 && f.pad_h == 0 &&
                         f.pad_w == 0 && f.groups == 1 && f.out_h == f.in_h && f.out_w == f.in_w;
  if (!pointwise || f.batch != s.batch || f.out_h != s.in_h || f.out_w != s.in_w || f.out_c != s.in_c ||
      first.epilogue.residual != nullptr || row_begin < 0 || row_end > s.batch * s.out_h) {
    return false;
  }
  if (row_begin >= row_end) return true;
  const int64_t row_bytes = s.in_w * s.in_c;  // one row of the first convolution's output
  const int64_t span = (s.kernel_h - 1) * s.dilation_h + 1;
  // Output rows per band: as many as keep their input rows within band_bytes (at least one).
  const int64_t fit = std::max<int64_t>(span, band_bytes / std::max<int64_t>(1, row_bytes));
  const int64_t band = std::max<int64_t>(1, (fit - span) / s.stride_h + 1);
  thread_local std::vector<uint8_t> mid;
  mid.resize(std::max<size_t>(mid.size(), static_cast<size_t>(((band - 1) * s.stride_h + span) * row_bytes)));
  int64_t have_n = -1, have_lo = 0, have_hi = 0;  // first-conv rows [have_lo, have_hi) of image have_n in mid
  for (int64_t r = row_begin; r < row_end;) {
    const int64_t n = r / s.out_h, o0 = r % s.out_h;
    const int64_t o1 = std::min({s.out_h, o0 + band, o0 + (row_end - r)});
    const int64_t top = o0 * s.stride_h - s.pad_h;  // the band's first window row (may be above the image)
    const int64_t lo = std::clamp<int64_t>(top, 0, s.in_h);
    const int64_t hi = std::clamp<int64_t>((o1 - 1) * s.stride_h - s.pad_h + span, lo, s.in_h);
    int64_t from = lo;  // first row still to compute
    if (have_n == n && lo >= have_lo && lo < have_hi) {
      std::memmove(mid.data(), mid.data() + (lo - have_lo) * row_bytes,
                   static_cast<size_t>((std::min(have_hi, hi) - lo) * row_bytes));
      from = std::min(have_hi, hi);
    }
    if (hi > from) {
      ConvShape fs = f;
      fs.batch = 1;
      fs.in_h = fs.out_h = hi - from;
      conv2d_u8s8_nhwc_packed(fs, first.weights, x + (n * f.in_h + from) * f.in_w * f.in_c, first.epilogue,
                              mid.data() + (from - lo) * row_bytes, 0, fs.out_h * fs.out_w, isa, first.prepared);
    }
    have_n = n;
    have_lo = lo;
    have_hi = hi;
    ConvShape ss = s;
    ss.batch = 1;
    ss.in_h = hi - lo;
    ss.out_h = o1 - o0;
    ss.pad_h = lo - top;
    ConvEpilogue se = second.epilogue;
    const int64_t out0 = (n * s.out_h + o0) * s.out_w * s.out_c;
    if (se.residual != nullptr) se.residual += out0;
    conv2d_u8s8_nhwc_packed(ss, second.weights, mid.data(), se, y + out0, 0, ss.out_h * ss.out_w, isa,
                            second.prepared);
    r += o1 - o0;
  }
  return true;
}

}  // namespace tqx::kernels
