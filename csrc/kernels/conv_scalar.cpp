// Scalar reference of the int8 convolution and add: the oracle for the SIMD kernels of #4.
#include <algorithm>
#include <cmath>

#include "kernels/conv.h"
#include "kernels/rounding.h"

namespace tqx::kernels {
namespace {

// Note [Rounding] applied to the epilogue value.
inline uint8_t requantize(float v, int32_t zp, int32_t qmin, int32_t qmax) {
  const float lo = static_cast<float>(qmin - zp), hi = static_cast<float>(qmax - zp);
  v = std::isnan(v) ? lo : std::min(std::max(v, lo), hi);
  return static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)) + zp);
}

}  // namespace

int64_t conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  return (in + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
}

void conv2d_u8s8_nhwc_scalar_rows(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvEpilogue& e,
                                  uint8_t* y, int64_t m_begin, int64_t m_end) {
  const int64_t cin_g = s.in_c / s.groups, cout_g = s.out_c / s.groups;
  const int32_t xz = e.input_zero_point;
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
    uint8_t* out = y + m * s.out_c;
    const uint8_t* res = e.residual != nullptr ? e.residual + m * s.out_c : nullptr;
    for (int64_t oc = 0; oc < s.out_c; ++oc) {
      const int64_t g = oc / cout_g;
      int32_t acc = 0;
      for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
        const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
        if (ih < 0 || ih >= s.in_h) continue;
        for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
          const int64_t iw = ow * s.stride_w - s.pad_w + kw * s.dilation_w;
          if (iw < 0 || iw >= s.in_w) continue;
          const uint8_t* xp = x + ((n * s.in_h + ih) * s.in_w + iw) * s.in_c + g * cin_g;
          const int8_t* wp = w + ((oc * s.kernel_h + kh) * s.kernel_w + kw) * cin_g;
          for (int64_t ic = 0; ic < cin_g; ++ic) acc += (static_cast<int32_t>(xp[ic]) - xz) * wp[ic];
        }
      }
      float v = static_cast<float>(acc) * e.multiplier[oc] + e.bias[oc];
      if (res != nullptr) v = v + static_cast<float>(res[oc] - e.residual_zero_point) * e.residual_multiplier;
      out[oc] = requantize(v, e.output_zero_point, e.qmin, e.qmax);
    }
  }
}

void conv2d_u8s8_nhwc_scalar(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvEpilogue& e,
                             uint8_t* y) {
  conv2d_u8s8_nhwc_scalar_rows(s, x, w, e, y, 0, s.batch * s.out_h * s.out_w);
}

void add_u8_scalar(int64_t n, const uint8_t* a, const uint8_t* b, const AddParams& p, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float va = static_cast<float>(a[i] - p.a_zero_point) * p.a_scale;
    const float vb = static_cast<float>(b[i] - p.b_zero_point) * p.b_scale;
    y[i] = requantize((va + vb) * p.inv_out_scale, p.out_zero_point, p.qmin, p.qmax);
  }
}

}  // namespace tqx::kernels
