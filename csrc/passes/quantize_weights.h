// Weight-only quantization: conv/linear weights stored as int8 or int16 (per output channel,
// symmetric) and dequantized once when the module is loaded (its __setstate__), so the file
// shrinks to about 1/4 or 1/2 while compute stays float.
//
// Before:  %w : Tensor = prim::Constant[value=<float weight>]()
//          %y = aten::conv2d(%x, %w, %b, ...)
// After:   %w = prim::GetAttr[name="_tqx_w_0"](%self)      (float, rebuilt by __setstate__)
//          %y = aten::conv2d(%x, %w, %b, ...)
//          attributes _tqx_wq_0 (int8/int16 values) and _tqx_ws_0 (scales) are what gets saved.
#pragma once

#include <torch/csrc/jit/api/module.h>

#include <string>

namespace tqx::passes {

// bits: 8 or 16. Returns how many weights were quantized; appends one report line per layer and
// records them as the module's summary attribute.
int64_t quantize_weights_only(torch::jit::Module& module, int64_t bits, std::string* report);

}  // namespace tqx::passes
