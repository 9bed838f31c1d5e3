// Pooling kernels on NHWC uint8 (quint8) values: max pool, average pool, adaptive average pool.
#pragma once

#include <cstdint>

#include "kernels/isa.h"
#include "kernels/quantize.h"

namespace tqx::kernels {

// One ISA's window primitives of the pooling drivers below: `count` output pixels y[p * n, ...]
// (p < count) of one output row, pixel p from the `taps` input pixels rows[t] + p * step (rows[t]
// points at a pixel's n channels; step: the window's move in bytes from one pixel to the next).
// Each channel vector stays in registers across the taps. Entries never null.
struct PoolKernels {
  Isa isa;
  // y[p * n + c] = max(0, rows[0][p * step + c], ..., rows[taps - 1][p * step + c]) for c < n.
  void (*u8_max_windows)(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step, uint8_t* y);
  // y[p * n + c] = requantize(bias + sum over t of rows[t][p * step + c]; p) for c < n: the int32 sum
  // is exact, the requantize is Note [Rounding]'s (quantize_kernels_scalar().s32_u8_requantize).
  void (*u8_avg_windows)(int64_t n, int64_t taps, const uint8_t* const* rows, int64_t count, int64_t step, int32_t bias,
                         const AffineParams& p, uint8_t* y);
};

const PoolKernels& pool_kernels_scalar();
const PoolKernels* pool_kernels_avx2();
const PoolKernels* pool_kernels_avx512();
const PoolKernels& pool_kernels_for(Isa isa);

// x is [batch, in_h, in_w, channels], y is [batch, out_h, out_w, channels], both contiguous.
struct Pool2dShape {
  int64_t batch, in_h, in_w, channels, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// Output pixels [m_begin, m_end) (m = (n * out_h + oh) * out_w + ow) of max_pool2d: the maximum
// over the window's taps inside the input (padding is ignored, as in PyTorch). Qparams unchanged.
void max_pool2d_u8_nhwc(const Pool2dShape& s, const uint8_t* x, uint8_t* y, int64_t m_begin, int64_t m_end, Isa isa);

// Note [Average pooling]
// ~~~~~~~~~~~~~~~~~~~~~~
// acc = sum of the window's bytes - in_zero_point * taps  (int32, exact; taps = window cells inside
// the input), then Note [Rounding]'s requantize of acc with
//   multiplier = in_scale / out_scale / divisor   (float32, left to right, as PyTorch)
// divisor = divisor_override, else the window's cells clipped to the padded input
// (count_include_pad) or `taps`. This is the vector path of PyTorch's quantized avg_pool2d /
// adaptive_avg_pool2d (NHWC) bit for bit; PyTorch's scalar channel tail (channels % 8) multiplies
// by 1 / (1 / multiplier) instead and can differ by 1 LSB, as can quantized mean, which averages in
// float.
struct AvgPoolParams {
  float in_scale, out_scale;
  int32_t in_zero_point, out_zero_point;
  bool count_include_pad;
  int64_t divisor_override;  // 0: none
};

// avg_pool2d over output pixels [m_begin, m_end); s.dilation is not used (PyTorch has none).
void avg_pool2d_u8_nhwc(const Pool2dShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y,
                        int64_t m_begin, int64_t m_end, Isa isa);
// adaptive_avg_pool2d: window rows [floor(oh * in_h / out_h), ceil((oh + 1) * in_h / out_h)), the
// same for columns; s.kernel/stride/pad/dilation are not used. Mean over H, W is out_h = out_w = 1.
void adaptive_avg_pool2d_u8_nhwc(const Pool2dShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y,
                                 int64_t m_begin, int64_t m_end, Isa isa);

}  // namespace tqx::kernels
