// Affine quantize / dequantize / requantize / fake-quantize kernels: the public, dispatching API.
#pragma once

#include <cstdint>

#include "kernels/isa.h"

namespace tqx::kernels {

// Everything a per-tensor affine kernel needs; see Note [Rounding] in kernels/rounding.h.
// A plain struct (no inline code) so that ISA-specific files can include it safely.
struct AffineParams {
  float scale;         // > 0; used by dequantize and fake-quantize
  float inv_scale;     // 1.0f / scale (quantize); the multiplier for requantize
  int32_t zero_point;  // within [qmin, qmax]
  int32_t qmin;
  int32_t qmax;
};

// The ONE place inv_scale is derived from scale (Note [Rounding]).
AffineParams make_affine_params(float scale, int32_t zero_point, int32_t qmin, int32_t qmax);
// Requantize parameters: multiplier = in_scale / out_scale (float32), applied to float(acc).
AffineParams make_requant_params(float multiplier, int32_t zero_point, int32_t qmin, int32_t qmax);

// One ISA's implementation of the family. Entries never null: an ISA without a fast path for an
// entry points it at the scalar reference.
struct QuantizeKernels {
  Isa isa;
  void (*f32_u8_quantize)(int64_t n, const float* x, uint8_t* y, const AffineParams& p);
  void (*f32_s8_quantize)(int64_t n, const float* x, int8_t* y, const AffineParams& p);
  void (*f32_s16_quantize)(int64_t n, const float* x, int16_t* y, const AffineParams& p);
  void (*f32_s32_quantize)(int64_t n, const float* x, int32_t* y, const AffineParams& p);
  void (*u8_f32_dequantize)(int64_t n, const uint8_t* q, float* y, const AffineParams& p);
  void (*s8_f32_dequantize)(int64_t n, const int8_t* q, float* y, const AffineParams& p);
  void (*s16_f32_dequantize)(int64_t n, const int16_t* q, float* y, const AffineParams& p);
  void (*s32_f32_dequantize)(int64_t n, const int32_t* q, float* y, const AffineParams& p);
  void (*s32_u8_requantize)(int64_t n, const int32_t* acc, uint8_t* y, const AffineParams& p);
  void (*s32_s8_requantize)(int64_t n, const int32_t* acc, int8_t* y, const AffineParams& p);
  // mask may be null; otherwise mask[i] = 1 where x[i] was inside the clamping range, else 0.
  void (*f32_fake_quantize)(int64_t n, const float* x, float* y, uint8_t* mask,
                            const AffineParams& p);
  // y[3 i + c] = plane c's byte i for i < n: three uint8 planes (an RGB image) as pixels.
  void (*u8_interleave3)(int64_t n, const uint8_t* p0, const uint8_t* p1, const uint8_t* p2, uint8_t* y);
};

// Float planes to uint8 pixels (an NCHW image quantized straight into NHWC): pixels [p_begin,
// p_end) of `channels` planes of hw floats (plane c at x + c * hw) are quantized with k's
// f32_u8_quantize, pixel i's channels going to y[i * channels ...]. Blocks of pixels are quantized
// per plane into a small buffer and interleaved from there, so the float input is read once and in
// order (a layout copy first, as at::Tensor::contiguous(ChannelsLast) does, cost several times the
// quantize itself).
void f32_planes_to_u8_pixels(const QuantizeKernels& k, int64_t channels, int64_t hw, const float* x, uint8_t* y,
                             int64_t p_begin, int64_t p_end, const AffineParams& p);

// The scalar reference: the test oracle and the fallback of every dispatch ladder.
const QuantizeKernels& quantize_kernels_scalar();
// Per-ISA tables; null when this build has no such code.
const QuantizeKernels* quantize_kernels_avx2();
const QuantizeKernels* quantize_kernels_avx512();
// The table for `isa`: the best compiled table at or below it.
const QuantizeKernels& quantize_kernels_for(Isa isa);
// The table for active_isa().
const QuantizeKernels& quantize_kernels();

}  // namespace tqx::kernels
