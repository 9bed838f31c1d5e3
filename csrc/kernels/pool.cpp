// Pooling drivers (window geometry, Note [Average pooling]) over one ISA's PoolKernels, and the
// dispatch ladder of the family.
#include "kernels/pool.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "kernels/quantize.h"

namespace tqx::kernels {

const PoolKernels& pool_kernels_for(Isa isa) {
  if (isa >= Isa::kAVX512) {
    if (const PoolKernels* k = pool_kernels_avx512()) return *k;
  }
  if (isa >= Isa::kAVX2) {
    if (const PoolKernels* k = pool_kernels_avx2()) return *k;
  }
  return pool_kernels_scalar();
}

namespace {

// The input pixels of a window: rows [h0, h1) x columns [w0, w1) of image n (clipped by the caller).
int64_t window_rows(const Pool2dShape& s, const uint8_t* x, int64_t n, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                    const uint8_t** rows) {
  int64_t taps = 0;
  for (int64_t ih = h0; ih < h1; ++ih) {
    const uint8_t* row = x + ((n * s.in_h + ih) * s.in_w) * s.channels;
    for (int64_t iw = w0; iw < w1; ++iw) rows[taps++] = row + iw * s.channels;
  }
  return taps;
}

// Output columns [lo, hi) whose windows (kernel_w taps, dilation_w apart) lie inside the input
// horizontally; along them a window is the previous one moved by stride_w pixels.
std::pair<int64_t, int64_t> inner_columns(const Pool2dShape& s, int64_t dilation_w) {
  const int64_t span = (s.kernel_w - 1) * dilation_w;
  const int64_t lo = (s.pad_w + s.stride_w - 1) / s.stride_w;
  const int64_t last = s.in_w - 1 - span + s.pad_w;  // the largest ow * stride_w allowed
  const int64_t hi = last < 0 ? 0 : std::min(s.out_w, last / s.stride_w + 1);
  return {std::min(lo, hi), hi};
}

// Calls run(n, oh, ow, count, rows, out) over output pixels [m_begin, m_end), where `count`
// pixels of one output row start at ow: more than one only inside columns [run_lo, run_hi),
// whose windows share their shape. rows has room for `max_taps` pointers.
template <typename Run>
void for_each_run(const Pool2dShape& s, int64_t m_begin, int64_t m_end, int64_t run_lo, int64_t run_hi,
                  int64_t max_taps, uint8_t* y, Run run) {
  if (m_begin >= m_end) return;
  std::vector<const uint8_t*> rows(static_cast<size_t>(std::max<int64_t>(max_taps, 1)));
  int64_t m = m_begin;
  while (m < m_end) {
    const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
    const int64_t row_end = std::min(m_end, m - ow + s.out_w);
    const int64_t count = ow >= run_lo && ow < run_hi ? std::min(run_hi - ow, row_end - m) : 1;
    run(n, oh, ow, count, rows.data(), y + m * s.channels);
    m += count;
  }
}

// Note [Average pooling]: the window's int32 sum minus zp * taps, requantized with
// in_scale / out_scale / divisor.
void average_windows(const Pool2dShape& s, const AvgPoolParams& p, int64_t taps, const uint8_t* const* rows,
                     int64_t count, int64_t divisor, const PoolKernels& k, uint8_t* out) {
  const float multiplier = p.in_scale / p.out_scale / static_cast<float>(divisor);
  k.u8_avg_windows(s.channels, taps, rows, count, s.stride_w * s.channels,
                   static_cast<int32_t>(-static_cast<int64_t>(p.in_zero_point) * taps),
                   make_requant_params(multiplier, p.out_zero_point, 0, 255), out);
}

}  // namespace

void max_pool2d_u8_nhwc(const Pool2dShape& s, const uint8_t* x, uint8_t* y, int64_t m_begin, int64_t m_end, Isa isa) {
  const PoolKernels& k = pool_kernels_for(isa);
  const int64_t c = s.channels;
  const auto [run_lo, run_hi] = inner_columns(s, s.dilation_w);
  for_each_run(s, m_begin, m_end, run_lo, run_hi, s.kernel_h * s.kernel_w, y,
               [&](int64_t n, int64_t oh, int64_t ow, int64_t count, const uint8_t** rows, uint8_t* out) {
                 const int64_t ih0 = oh * s.stride_h - s.pad_h, iw0 = ow * s.stride_w - s.pad_w;
                 int64_t taps = 0;
                 for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
                   const int64_t ih = ih0 + kh * s.dilation_h;
                   if (ih < 0 || ih >= s.in_h) continue;
                   const uint8_t* row = x + (n * s.in_h + ih) * s.in_w * c;
                   for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
                     const int64_t iw = iw0 + kw * s.dilation_w;
                     if (iw >= 0 && iw < s.in_w) rows[taps++] = row + iw * c;
                   }
                 }
                 k.u8_max_windows(c, taps, rows, count, s.stride_w * c, out);
               });
}

void avg_pool2d_u8_nhwc(const Pool2dShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y,
                        int64_t m_begin, int64_t m_end, Isa isa) {
  const PoolKernels& k = pool_kernels_for(isa);
  const auto [run_lo, run_hi] = inner_columns(s, 1);
  for_each_run(s, m_begin, m_end, run_lo, run_hi, s.kernel_h * s.kernel_w, y,
               [&](int64_t n, int64_t oh, int64_t ow, int64_t count, const uint8_t** rows, uint8_t* out) {
                 int64_t h0 = oh * s.stride_h - s.pad_h, w0 = ow * s.stride_w - s.pad_w;
                 int64_t h1 = std::min(h0 + s.kernel_h, s.in_h + s.pad_h);
                 int64_t w1 = std::min(w0 + s.kernel_w, s.in_w + s.pad_w);
                 const int64_t padded = (h1 - h0) * (w1 - w0);
                 h0 = std::max<int64_t>(h0, 0);
                 w0 = std::max<int64_t>(w0, 0);
                 h1 = std::min(h1, s.in_h);
                 w1 = std::min(w1, s.in_w);
                 const int64_t taps = window_rows(s, x, n, h0, h1, w0, w1, rows);
                 const int64_t divisor = p.divisor_override ? p.divisor_override : p.count_include_pad ? padded : taps;
                 average_windows(s, p, taps, rows, count, divisor, k, out);
               });
}

void adaptive_avg_pool2d_u8_nhwc(const Pool2dShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y,
                                 int64_t m_begin, int64_t m_end, Isa isa) {
  const PoolKernels& k = pool_kernels_for(isa);
  // A window spans at most ceil(in / out) + 1 rows (columns), and never more than the input.
  const int64_t max_h = std::min(s.in_h, (s.in_h + s.out_h - 1) / s.out_h + 1);
  const int64_t max_w = std::min(s.in_w, (s.in_w + s.out_w - 1) / s.out_w + 1);
  // Window widths vary along a row: one pixel per call.
  for_each_run(s, m_begin, m_end, 0, 0, max_h * max_w, y,
               [&](int64_t n, int64_t oh, int64_t ow, int64_t, const uint8_t** rows, uint8_t* out) {
                 const int64_t h0 = oh * s.in_h / s.out_h, h1 = ((oh + 1) * s.in_h + s.out_h - 1) / s.out_h;
                 const int64_t w0 = ow * s.in_w / s.out_w, w1 = ((ow + 1) * s.in_w + s.out_w - 1) / s.out_w;
                 const int64_t taps = window_rows(s, x, n, h0, h1, w0, w1, rows);
                 average_windows(s, p, taps, rows, 1, taps, k, out);
               });
}

}  // namespace tqx::kernels
