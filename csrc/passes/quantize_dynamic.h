// Dynamic quantization: int8 weights packed once, activations quantized per batch at run time.
//
// Before:  %y = aten::linear(%x, %w, %b)              (%w, %b constants after canonicalize)
//          %o, %h, %c = aten::lstm(%x, %hx, %flat_weights, ...)
// After:   %p = prim::GetAttr[name="_tqx_packed_0"](%self)
//          %y = quantized::linear_dynamic(%x, %p, %reduce_range)
//          %o, %h, %c = aten::quantized_lstm(%x, %hx, %cells, ..., dtype=qint8, use_dynamic=True)
#pragma once

#include <torch/csrc/jit/api/module.h>

#include <string>

namespace tqx::passes {

// Rewrites every linear with a constant weight in a canonicalized module; returns how many.
// weight_per_channel selects per-output-channel (default) or per-tensor symmetric int8 weights.
// reduce_range quantizes activations to 7 bits, as torch.ao's dynamic modules do (needed only on
// CPUs without VNNI).
int64_t quantize_dynamic_linear(torch::jit::Module& module, bool weight_per_channel, bool reduce_range,
                                const std::string& engine, std::string* report);

// LSTM and GRU (aten::lstm / aten::gru over constant weights) onto aten::quantized_lstm /
// quantized_gru with per-tensor int8 weights packed into cell parameters, as torch.ao's dynamic
// RNN modules do. Returns how many.
int64_t quantize_dynamic_rnn(torch::jit::Module& module, bool reduce_range, const std::string& engine,
                             std::string* report);

}  // namespace tqx::passes
