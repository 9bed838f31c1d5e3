// Convert: observers become quantize/dequantize pairs (the reference int8 model), then each op
// the registry knows is lowered to the target's int8 operators and redundant pairs vanish.
//
// Before (prepared):  %x.obs = prim::CallMethod[name="forward"](%o0, %x)
//                     %y = aten::conv2d(%x.obs, %w, %b, ...);  %z = aten::relu(%y)
//                     %z.obs = prim::CallMethod[name="forward"](%o1, %z)
// Reference (QDQ):    %xq = aten::quantize_per_tensor(%x, s0, z0, 13);  %xd = aten::dequantize(%xq)
//                     %y = aten::conv2d(%xd, %w, ...); %z = aten::relu(%y)
//                     %zq = aten::quantize_per_tensor(%z, s1, z1, 13);  %zd = aten::dequantize(%zq)
// After (native):     %xq = aten::quantize_per_tensor(%x, s0, z0, 13)
//                     %p = prim::GetAttr[name="_tqx_packed_0"](%self)
//                     %zq = quantized::conv2d_relu(%xq, %p, s1, z1);  %zd = aten::dequantize(%zq)
#pragma once

#include <torch/csrc/jit/api/module.h>

#include <string>

#include "passes/qconfig.h"

namespace tqx::passes {

struct ConvertOptions {
  std::string target = "native";  // "native" (PyTorch quantized:: ops), "quantx" or "reference"
  QConfig qconfig;
  // Warn (TORCH_WARN) about if/loop branches no calibration batch entered, which stay float. The
  // dispatcher op turns it off: its warnings reach Python only as log lines, so the Python face
  // warns from the summary instead.
  bool warn_unreached = true;
};

// Converts a calibrated prepared module in place (callers pass a clone). Fills `report` with one
// line per op: what it became and why.
void convert_module(torch::jit::Module& module, const ConvertOptions& options, std::string* report);

}  // namespace tqx::passes
