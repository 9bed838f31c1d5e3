// Concatenation and nearest upsampling of uint8 values (kernels/copy.h).
#include "kernels/copy.h"

#include <algorithm>
#include <cstring>

#include "kernels/eltwise.h"

namespace tqx::kernels {

void u8_cat_rows(int64_t n_inputs, const uint8_t* const* xs, const int64_t* inner, const uint8_t* const* tables,
                 uint8_t* y, int64_t r_begin, int64_t r_end, Isa isa) {
  const EltwiseKernels& k = eltwise_kernels_for(isa);
  int64_t row = 0;
  for (int64_t i = 0; i < n_inputs; ++i) row += inner[i];
  for (int64_t r = r_begin; r < r_end; ++r) {
    uint8_t* out = y + r * row;
    for (int64_t i = 0; i < n_inputs; ++i) {
      const uint8_t* src = xs[i] + r * inner[i];
      if (tables[i] != nullptr) {
        k.u8_lut(inner[i], src, tables[i], out);
      } else {
        std::memcpy(out, src, static_cast<size_t>(inner[i]));
      }
      out += inner[i];
    }
  }
}

void u8_upsample_nearest_nhwc(int64_t in_h, int64_t in_w, int64_t channels, int64_t out_h, int64_t out_w,
                              const int64_t* src_h, const int64_t* src_w, const uint8_t* x, uint8_t* y,
                              int64_t m_begin, int64_t m_end) {
  const int64_t row_bytes = out_w * channels;
  int64_t m = m_begin;
  while (m < m_end) {
    const int64_t n = m / (out_h * out_w), oh = m / out_w % out_h, ow = m % out_w;
    // A whole output row with the same source row as the one above it, written by this call:
    // one copy of that row (half the rows of a 2x upsample).
    if (ow == 0 && oh > 0 && src_h[oh] == src_h[oh - 1] && m - out_w >= m_begin && m + out_w <= m_end) {
      std::memcpy(y + m * channels, y + (m - out_w) * channels, static_cast<size_t>(row_bytes));
      m += out_w;
      continue;
    }
    const uint8_t* src_row = x + (n * in_h + src_h[oh]) * in_w * channels;
    const int64_t end = std::min(m_end, m - ow + out_w);
    for (int64_t w = ow; m < end; ++m, ++w) {
      std::memcpy(y + m * channels, src_row + src_w[w] * channels, static_cast<size_t>(channels));
    }
  }
}

}  // namespace tqx::kernels
