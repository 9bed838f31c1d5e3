// Builds the 256-entry tables of kernels/lut.h with the scalar quantize reference.
#include "kernels/lut.h"

#include <algorithm>
#include <cmath>

#include "kernels/quantize.h"

namespace tqx::kernels {

void build_u8_lut(LutFunction f, float in_scale, int32_t in_zero_point, float out_scale, int32_t out_zero_point,
                  uint8_t table[256]) {
  float y[256];
  for (int q = 0; q < 256; ++q) {
    const float x = static_cast<float>(q - in_zero_point) * in_scale;  // Note [Rounding]: dequantize
    switch (f) {
      case LutFunction::kRequantize: y[q] = x; break;
      case LutFunction::kHardswish: y[q] = x * std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f; break;
      case LutFunction::kHardsigmoid: y[q] = std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f; break;
      case LutFunction::kSigmoid: y[q] = 1.0f / (1.0f + std::exp(-x)); break;
      case LutFunction::kTanh: y[q] = std::tanh(x); break;
    }
  }
  const AffineParams p = make_affine_params(out_scale, out_zero_point, 0, 255);
  quantize_kernels_scalar().f32_u8_quantize(256, y, table, p);
}

}  // namespace tqx::kernels
