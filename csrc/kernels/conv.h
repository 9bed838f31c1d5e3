// int8 convolution (and linear, as a 1x1 convolution) on NHWC uint8 activations and int8 weights
// with int32 accumulation and a fused requantize epilogue. Torch-free.
#pragma once

#include <cstdint>

namespace tqx::kernels {

struct ConvShape {
  int64_t batch, in_h, in_w, in_c;
  int64_t out_h, out_w, out_c;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t groups;
};

// Output height/width of a convolution (floor division, as PyTorch).
int64_t conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation);

// The epilogue. With acc = sum (x - input_zero_point) * w over the receptive field:
//   y = clamp(nearbyint(float(acc) * multiplier[oc] + bias[oc]) + output_zero_point, qmin, qmax)
// multiplier[oc] = x_scale * w_scale[oc] / y_scale and bias[oc] = float bias / y_scale, both
// float32 (see Note [Rounding] for the rounding rule). ReLU / ReLU6 / clamp fuse as qmin / qmax.
struct ConvEpilogue {
  int32_t input_zero_point;
  const float* multiplier;  // [out_c]
  const float* bias;        // [out_c]
  int32_t output_zero_point;
  int32_t qmin, qmax;
};

// x: [batch, in_h, in_w, in_c] uint8 (NHWC); w: [out_c, kernel_h, kernel_w, in_c / groups] int8
// (OHWI, symmetric: zero point 0); y: [batch, out_h, out_w, out_c] uint8.
// Padding contributes the input zero point (real value 0).
void conv2d_u8s8_nhwc_scalar(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvEpilogue& e,
                             uint8_t* y);

// The active implementation (the scalar reference until #4 adds SIMD variants).
void conv2d_u8s8_nhwc(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvEpilogue& e, uint8_t* y);

// Elementwise y = clamp(nearbyint(((a - za) * sa + (b - zb) * sb) * inv_sy) + zy, qmin, qmax), float32.
struct AddParams {
  float a_scale, b_scale, inv_out_scale;
  int32_t a_zero_point, b_zero_point, out_zero_point;
  int32_t qmin, qmax;
};
void add_u8_scalar(int64_t n, const uint8_t* a, const uint8_t* b, const AddParams& p, uint8_t* y);

}  // namespace tqx::kernels
