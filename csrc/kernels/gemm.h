// Internal interface between the convolution driver (conv.cpp) and its per-ISA microkernels.
// Plain structs only: included by files compiled with different -m flags.
#pragma once

#include <cstdint>

namespace tqx::kernels {

// The requantize epilogue of one tile, pointers already offset to the tile's first column.
struct TileEpilogue {
  const int32_t* col_sums;   // sum of the weights of each column
  const float* multiplier;   // per column
  const float* bias;         // per column
  int32_t input_zero_point;  // acc = sum x * w - input_zero_point * col_sums
  int32_t output_zero_point;
  float lo, hi;             // clamp bounds relative to the zero point: qmin - zp, qmax - zp
  const uint8_t* residual;  // null, or the tile's first residual element (row stride ldy)
  float residual_multiplier;
  int32_t residual_zero_point;
  // True when no value before the clamp can reach 2^31 in magnitude (requantize_fits_int32): a
  // kernel may then round first and clamp the integers (AVX2: in int16 after the packs).
  bool int_clamp = false;
  // Optional: bytes [prefetch, prefetch_end) of B that a later tile reads (the next column group's
  // weights), for the tile to prefetch into cache while it computes, a line per k-step. Layers
  // whose weights come from memory (a whole network evicts them between inferences) otherwise
  // stream each column group's B from DRAM in its first tile. Kernels may ignore it.
  const int8_t* prefetch = nullptr;
  const int8_t* prefetch_end = nullptr;
};

// C[rows][cols] = A[rows][k] * B[k][cols], then the epilogue, stored as uint8 to y (row stride ldy).
// A: rows of uint8 at a + i * lda, k_padded (a multiple of the kernel's k_align) bytes used per row;
//    the kernel may read rows up to `rows` rounded up to row_align (their results are discarded).
// B: packed blocks of 16 columns; block j at b + j * b_stride, each k-group of four rows stored as
//    [16 columns][4 bytes]. cols <= the kernel's max_cols, rows <= max_rows.
using GemmTileFn = void (*)(int64_t rows, int64_t cols, int64_t k_padded, const uint8_t* a, int64_t lda,
                            const int8_t* b, int64_t b_stride, const TileEpilogue& e, uint8_t* y, int64_t ldy);

// Optional: the same product over any number of rows (a row block, up to kRowBlock in conv.cpp), the
// kernel splitting them into tiles itself as the driver would (tiles of nearly equal height, at
// most max_rows[blocks] rows, the taller ones first), so that the driver makes one call per column
// group instead of one per tile. e.residual is row 0's (row stride ldy); [e.prefetch,
// e.prefetch_end) is spread over the tiles after the first (over the only tile when there is one).
using GemmTilesFn = GemmTileFn;

// The same product without an im2col copy (an implicit GEMM through an indirection buffer, as
// XNNPACK's igemm): row i's reduction is `taps` runs of k_tap bytes (a multiple of k_align), run t
// starting at a[i * taps + t] + a_offset; B's k-groups follow the runs in order (tap-major, as the
// packed OHWI weights). Padding taps point at a buffer of input zero points.
using GemmIndirectTileFn = void (*)(int64_t rows, int64_t cols, int64_t taps, int64_t k_tap, const uint8_t* const* a,
                                    int64_t a_offset, const int8_t* b, int64_t b_stride, const TileEpilogue& e,
                                    uint8_t* y, int64_t ldy);

// Depthwise convolution of one output pixel over channels [0, channels): taps[t] points at the
// input pixel of tap t (channel 0) or is null for padding (contributes the input zero point).
// w: [ceil(taps/2)][channels rounded to 16][2] int16 pairs of consecutive taps.
using DepthwisePixelFn = void (*)(int64_t taps, int64_t channels, const uint8_t* const* tap_ptrs, const int16_t* w,
                                  const TileEpilogue& e, uint8_t* y);

// A depthwise convolution's geometry for the row kernels (a plain copy of ConvShape's fields).
struct DepthwiseShape {
  int64_t in_h, in_w, channels, out_h, out_w, kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// A depthwise convolution's weights as the row kernels read them.
//   pairs: as for DepthwisePixelFn.
//   quads: null unless the kernels ask for them (GemmKernels::depthwise_quads) and the kernel is 3x3
//          or 5x5 (PackedConvWeights::depthwise_quads()). Per block of 16 channels (channels
//          rounded up to 16), (taps + 3) / 4 vectors of 64 bytes, vector g holding taps 4g..4g+3
//          of each channel at bytes 4 ch + t % 4 (zero past the last tap); for 3x3 eighteen more
//          follow, six per kernel row kh: its weights shifted by d = -3..2 within a quad of input
//          columns, byte 4 ch + i holding w[kh][i + d] where 0 <= i + d <= 2 and zero elsewhere
//          (d = 0: (w0, w1, w2, 0); d = -1: (0, w0, w1, w2); d = 2: (w2, 0, 0, 0)).
struct DepthwiseWeights {
  const int16_t* pairs;
  const int8_t* quads;
};

// Output pixels [m_begin, m_end) of a depthwise convolution of at most kDepthwiseRowsMaxTaps taps;
// e's residual, when set, points at pixel 0 of the residual tensor.
// Returns false, having written nothing, for kernel sizes it does not take (the driver then runs
// depthwise_pixel per pixel).
constexpr int kDepthwiseRowsMaxTaps = 25;  // up to 5x5
using DepthwiseRowsFn = bool (*)(const DepthwiseShape& s, const uint8_t* x, const DepthwiseWeights& w,
                                 const TileEpilogue& e, uint8_t* y, int64_t m_begin, int64_t m_end);

// The walk the depthwise row kernels share (defined in conv.cpp, compiled without ISA flags: an
// inline function here could be linked from a file built for a wider ISA). Per tap t of the
// kernel (row-major), its offsets dh/dw from the window origin and off = its byte offset in x;
// output columns [inner_lo, inner_hi) have windows inside the input horizontally.
struct DepthwiseGeometry {
  int64_t taps;
  int64_t off[kDepthwiseRowsMaxTaps], dh[kDepthwiseRowsMaxTaps], dw[kDepthwiseRowsMaxTaps];
  int64_t inner_lo, inner_hi;
};
DepthwiseGeometry depthwise_geometry(const DepthwiseShape& s);

// Output pixels [m, m + count) of one output row, count <= kDepthwiseSegment: those in [in_lo,
// in_hi) have windows inside the input and read tap t at base + j * stride_w * channels + off[t];
// for the others p[j][t] holds the tap's pixel (channel 0), or zero_row where it falls in the padding.
// The row kernels load each channel block's weights and epilogue vectors once per segment: 64
// pixels ran mobilenet_v2's 3x3 layers at 56x56 and 112x112 1.15-1.2x faster than 16 did (Zen 5,
// AVX-512 VBMI kernel; 1.01-1.05x for the AVX2 ones), while the input rows a segment reads (three
// of 66 pixels, 28 KiB at 144 channels) still fit in L1.
constexpr int64_t kDepthwiseSegment = 64;
struct DepthwiseSegment {
  int64_t count, in_lo, in_hi;
  const uint8_t* base;
};
DepthwiseSegment depthwise_segment(const DepthwiseShape& s, const DepthwiseGeometry& g, const uint8_t* x,
                                   const uint8_t* zero_row, int64_t m, int64_t m_end,
                                   const uint8_t* (*p)[kDepthwiseRowsMaxTaps]);

struct GemmKernels {
  GemmTileFn tile;
  int64_t max_cols;     // columns per call (a multiple of 16)
  int64_t max_rows[5];  // rows per call, by the number of 16-column blocks in the call (1..4)
  int64_t k_align;      // the reduction is padded (zero weights) to a multiple of this
  int64_t row_align;    // A must be readable up to rows rounded up to this
  void (*begin)();      // null, or called by each thread before its first tile of a call (AMX: tile config)
  void (*end)();        // null, or called after its last tile
  DepthwisePixelFn depthwise;
  DepthwiseRowsFn depthwise_rows = nullptr;    // optional faster whole-range kernel
  GemmIndirectTileFn indirect_tile = nullptr;  // optional: convolutions without im2col (same max_rows)
  GemmTilesFn tiles = nullptr;                 // optional: tile's rows in one call (row_align 1 only)
  // Optional: the tiles read A as int16. The driver then widens each block of A rows with this
  // (rows of k uint8 at a + i * lda to rows of k int16 at out + i * k) and passes the tiles that
  // copy, cast to `const uint8_t*`, with lda in bytes (2 * k).
  void (*widen_a)(int64_t rows, int64_t k, const uint8_t* a, int64_t lda, int16_t* out) = nullptr;
  // The tiles read B as int16 k-pairs (PackedConvWeights::int16_blocks(): per 16-column block,
  // k_alloc / 2 groups of [16 columns][2 int16]); b and b_stride are then in that array, b_stride in bytes.
  bool b_int16 = false;
  // Null, or kernels the driver may use instead for a block of rows whose A bytes and input zero
  // point are all below 128 (AVX2: vpmaddubsw, whose int16 pair sums cannot saturate then). Same
  // max_cols, max_rows and k_align.
  const GemmKernels* seven_bit = nullptr;
  bool depthwise_quads = false;  // depthwise_rows reads DepthwiseWeights::quads
};

// PackedConvWeights::int16_blocks() from the int8 blocks: `blocks` blocks of k_alloc rows.
void widen_packed_weights(const int8_t* packed, int64_t blocks, int64_t k_alloc, int16_t* out);

// Null when this build lacks the ISA.
const GemmKernels* gemm_kernels_avx2();
const GemmKernels* gemm_kernels_avx_vnni();
const GemmKernels* gemm_kernels_avx512_vnni();
const GemmKernels* gemm_kernels_amx();

}  // namespace tqx::kernels
