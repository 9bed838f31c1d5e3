// Pooling drivers (window geometry, Note [Average pooling]) over one ISA's PoolKernels, and the
// dispatch ladder of the family.
#include "kernels/pool.h"

#include <algorithm>
#include <cstring>
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

void max_pool2d_u8_nhwc(const Pool2dShape& s, const uint8_t* x, uint8_t* y, int64_t m_begin, int64_t m_end, Isa isa) {
  const PoolKernels& k = pool_kernels_for(isa);
  const int64_t c = s.channels;
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
    uint8_t* out = y + m * c;
    std::memset(out, 0, static_cast<size_t>(c));
    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
      if (ih < 0 || ih >= s.in_h) continue;
      for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
        const int64_t iw = ow * s.stride_w - s.pad_w + kw * s.dilation_w;
        if (iw < 0 || iw >= s.in_w) continue;
        k.u8_max_accumulate(c, x + ((n * s.in_h + ih) * s.in_w + iw) * c, out);
      }
    }
  }
}

namespace {

// Sums the window [h0, h1) x [w0, w1) of image n (Note [Average pooling]) and requantizes it.
void average_window(const Pool2dShape& s, const AvgPoolParams& p, const uint8_t* x, int64_t n, int64_t h0,
                    int64_t h1, int64_t w0, int64_t w1, int64_t divisor, const PoolKernels& k,
                    const QuantizeKernels& q, int32_t* acc, uint8_t* out) {
  const int64_t c = s.channels;
  const int64_t taps = std::max<int64_t>(0, h1 - h0) * std::max<int64_t>(0, w1 - w0);
  std::fill(acc, acc + c, static_cast<int32_t>(-static_cast<int64_t>(p.in_zero_point) * taps));
  for (int64_t ih = h0; ih < h1; ++ih) {
    for (int64_t iw = w0; iw < w1; ++iw) k.u8_s32_accumulate(c, x + ((n * s.in_h + ih) * s.in_w + iw) * c, acc);
  }
  const float multiplier = p.in_scale / p.out_scale / static_cast<float>(divisor);
  q.s32_u8_requantize(c, acc, out, make_requant_params(multiplier, p.out_zero_point, 0, 255));
}

// Calls window(n, oh, ow, acc, out) for output pixels [m_begin, m_end) with an int32 scratch row.
template <typename Window>
void for_each_output(const Pool2dShape& s, int64_t m_begin, int64_t m_end, uint8_t* y, Window window) {
  std::vector<int32_t> acc(static_cast<size_t>(s.channels));
  for (int64_t m = m_begin; m < m_end; ++m) {
    window(m / (s.out_h * s.out_w), m / s.out_w % s.out_h, m % s.out_w, acc.data(), y + m * s.channels);
  }
}

}  // namespace

void avg_pool2d_u8_nhwc(const Pool2dShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y,
                        int64_t m_begin, int64_t m_end, Isa isa) {
  const PoolKernels& k = pool_kernels_for(isa);
  const QuantizeKernels& q = quantize_kernels_for(isa);
  for_each_output(s, m_begin, m_end, y, [&](int64_t n, int64_t oh, int64_t ow, int32_t* acc, uint8_t* out) {
    int64_t h0 = oh * s.stride_h - s.pad_h, w0 = ow * s.stride_w - s.pad_w;
    int64_t h1 = std::min(h0 + s.kernel_h, s.in_h + s.pad_h), w1 = std::min(w0 + s.kernel_w, s.in_w + s.pad_w);
    const int64_t padded = (h1 - h0) * (w1 - w0);
    h0 = std::max<int64_t>(h0, 0);
    w0 = std::max<int64_t>(w0, 0);
    h1 = std::min(h1, s.in_h);
    w1 = std::min(w1, s.in_w);
    const int64_t taps = std::max<int64_t>(0, h1 - h0) * std::max<int64_t>(0, w1 - w0);
    const int64_t divisor = p.divisor_override ? p.divisor_override : p.count_include_pad ? padded : taps;
    average_window(s, p, x, n, h0, h1, w0, w1, divisor, k, q, acc, out);
  });
}

void adaptive_avg_pool2d_u8_nhwc(const Pool2dShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y,
                                 int64_t m_begin, int64_t m_end, Isa isa) {
  const PoolKernels& k = pool_kernels_for(isa);
  const QuantizeKernels& q = quantize_kernels_for(isa);
  for_each_output(s, m_begin, m_end, y, [&](int64_t n, int64_t oh, int64_t ow, int32_t* acc, uint8_t* out) {
    const int64_t h0 = oh * s.in_h / s.out_h, h1 = ((oh + 1) * s.in_h + s.out_h - 1) / s.out_h;
    const int64_t w0 = ow * s.in_w / s.out_w, w1 = ((ow + 1) * s.in_w + s.out_w - 1) / s.out_w;
    average_window(s, p, x, n, h0, h1, w0, w1, (h1 - h0) * (w1 - w0), k, q, acc, out);
  });
}

}  // namespace tqx::kernels
