// 256-entry uint8 -> uint8 tables for unary ops on quint8 values (requantize, activations).
#pragma once

#include <cstdint>

namespace tqx::kernels {

// The functions a table can hold, each evaluated in float32 with PyTorch's formula:
//   kRequantize   y = x                              (a change of qparams, e.g. a cat input)
//   kHardswish    y = x * min(max(x + 3, 0), 6) / 6
//   kHardsigmoid  y = min(max(x + 3, 0), 6) / 6
//   kSigmoid      y = 1 / (1 + exp(-x))
//   kTanh         y = tanh(x)
enum class LutFunction : int { kRequantize = 0, kHardswish, kHardsigmoid, kSigmoid, kTanh };

// table[q] = quantize(f(dequantize(q; in_scale, in_zero_point)); out_scale, out_zero_point) over
// [0, 255], both steps per Note [Rounding]. Exact per entry: the op applying the table gives, for
// every input byte, the reference's value for it.
void build_u8_lut(LutFunction f, float in_scale, int32_t in_zero_point, float out_scale, int32_t out_zero_point,
                  uint8_t table[256]);

}  // namespace tqx::kernels
