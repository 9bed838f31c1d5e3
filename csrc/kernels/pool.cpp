// Pooling drivers (window geometry, Note [Average pooling]) over one ISA's PoolKernels, and the
// dispatch ladder of the family.
#include "kernels/pool.h"

#include <algorithm>
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

// Calls window(n, oh, ow, rows, out) for output pixels [m_begin, m_end); rows has room for
// `max_taps` pointers. The pixel index is decoded once, then stepped.
template <typename Window>
void for_each_output(const Pool2dShape& s, int64_t m_begin, int64_t m_end, int64_t max_taps, uint8_t* y,
                     Window window) {
  if (m_begin >= m_end) return;
  std::vector<const uint8_t*> rows(static_cast<size_t>(std::max<int64_t>(max_taps, 1)));
  int64_t n = m_begin / (s.out_h * s.out_w), oh = m_begin / s.out_w % s.out_h, ow = m_begin % s.out_w;
  for (int64_t m = m_begin; m < m_end; ++m) {
    window(n, oh, ow, rows.data(), y + m * s.channels);
    if (++ow == s.out_w) {
      ow = 0;
      if (++oh == s.out_h) {
        oh = 0;
        ++n;
      }
    }
  }
}

// Note [Average pooling]: the window's int32 sum minus zp * taps, requantized with
// in_scale / out_scale / divisor.
void average_window(const Pool2dShape& s, const AvgPoolParams& p, int64_t taps, const uint8_t* const* rows,
                    int64_t divisor, const PoolKernels& k, uint8_t* out) {
  const float multiplier = p.in_scale / p.out_scale / static_cast<float>(divisor);
  k.u8_avg_window(s.channels, taps, rows, static_cast<int32_t>(-static_cast<int64_t>(p.in_zero_point) * taps),
                  make_requant_params(multiplier, p.out_zero_point, 0, 255), out);
}

}  // namespace

void max_pool2d_u8_nhwc(const Pool2dShape& s, const uint8_t* x, uint8_t* y, int64_t m_begin, int64_t m_end, Isa isa) {
  const PoolKernels& k = pool_kernels_for(isa);
  const int64_t c = s.channels;
  // Offsets of the taps from the window's first pixel; windows inside the input use them as is.
  std::vector<int64_t> offsets;
  for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
    for (int64_t kw = 0; kw < s.kernel_w; ++kw) offsets.push_back((kh * s.dilation_h * s.in_w + kw * s.dilation_w) * c);
  }
  const int64_t span_h = (s.kernel_h - 1) * s.dilation_h, span_w = (s.kernel_w - 1) * s.dilation_w;
  for_each_output(s, m_begin, m_end, s.kernel_h * s.kernel_w, y,
                  [&](int64_t n, int64_t oh, int64_t ow, const uint8_t** rows, uint8_t* out) {
                    const int64_t ih0 = oh * s.stride_h - s.pad_h, iw0 = ow * s.stride_w - s.pad_w;
                    int64_t taps = 0;
                    if (ih0 >= 0 && iw0 >= 0 && ih0 + span_h < s.in_h && iw0 + span_w < s.in_w) {
                      const uint8_t* base = x + ((n * s.in_h + ih0) * s.in_w + iw0) * c;
                      for (const int64_t off : offsets) rows[taps++] = base + off;
                    } else {
                      for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
                        const int64_t ih = ih0 + kh * s.dilation_h;
                        if (ih < 0 || ih >= s.in_h) continue;
                        const uint8_t* row = x + (n * s.in_h + ih) * s.in_w * c;
                        for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
                          const int64_t iw = iw0 + kw * s.dilation_w;
                          if (iw >= 0 && iw < s.in_w) rows[taps++] = row + iw * c;
                        }
                      }
                    }
                    k.u8_max_window(c, taps, rows, out);
                  });
}

void avg_pool2d_u8_nhwc(const Pool2dShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y,
                        int64_t m_begin, int64_t m_end, Isa isa) {
  const PoolKernels& k = pool_kernels_for(isa);
  for_each_output(s, m_begin, m_end, s.kernel_h * s.kernel_w, y,
                  [&](int64_t n, int64_t oh, int64_t ow, const uint8_t** rows, uint8_t* out) {
                    int64_t h0 = oh * s.stride_h - s.pad_h, w0 = ow * s.stride_w - s.pad_w;
                    int64_t h1 = std::min(h0 + s.kernel_h, s.in_h + s.pad_h);
                    int64_t w1 = std::min(w0 + s.kernel_w, s.in_w + s.pad_w);
                    const int64_t padded = (h1 - h0) * (w1 - w0);
                    h0 = std::max<int64_t>(h0, 0);
                    w0 = std::max<int64_t>(w0, 0);
                    h1 = std::min(h1, s.in_h);
                    w1 = std::min(w1, s.in_w);
                    const int64_t taps = window_rows(s, x, n, h0, h1, w0, w1, rows);
                    const int64_t divisor = p.divisor_override ? p.divisor_override
                                            : p.count_include_pad ? padded
                                                                  : taps;
                    average_window(s, p, taps, rows, divisor, k, out);
                  });
}

void adaptive_avg_pool2d_u8_nhwc(const Pool2dShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y,
                                 int64_t m_begin, int64_t m_end, Isa isa) {
  const PoolKernels& k = pool_kernels_for(isa);
  // A window spans at most ceil(in / out) + 1 rows (columns), and never more than the input.
  const int64_t max_h = std::min(s.in_h, (s.in_h + s.out_h - 1) / s.out_h + 1);
  const int64_t max_w = std::min(s.in_w, (s.in_w + s.out_w - 1) / s.out_w + 1);
  for_each_output(s, m_begin, m_end, max_h * max_w, y,
                  [&](int64_t n, int64_t oh, int64_t ow, const uint8_t** rows, uint8_t* out) {
                    const int64_t h0 = oh * s.in_h / s.out_h, h1 = ((oh + 1) * s.in_h + s.out_h - 1) / s.out_h;
                    const int64_t w0 = ow * s.in_w / s.out_w, w1 = ((ow + 1) * s.in_w + s.out_w - 1) / s.out_w;
                    const int64_t taps = window_rows(s, x, n, h0, h1, w0, w1, rows);
                    average_window(s, p, taps, rows, taps, k, out);
                  });
}

}  // namespace tqx::kernels
