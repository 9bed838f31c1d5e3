// Weight quantization and packing shared by the convert and dynamic-quantization passes.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/jit/api/module.h>

#include <string>
#include <vector>

#include "passes/qconfig.h"

namespace tqx::passes {

// A conv/linear weight quantized as a WeightSpec says: integers, and per-output-channel qparams.
struct QuantizedWeight {
  WeightSpec spec;
  at::Tensor values;      // int16, the weight's shape, within [spec.qmin(), spec.qmax()]
  at::Tensor scale;       // float64 [channels] (one value per tensor when !spec.per_channel)
  at::Tensor zero_point;  // int64, as scale

  // (values - zero_point) * scale as float32 (Note [Rounding]).
  at::Tensor dequantize() const;
  // A PyTorch qint8 tensor (per-channel axis 0, or per-tensor) holding the same integers; only
  // for bits <= 8 (4-bit values lie in [-8, 7] of the int8 container).
  at::Tensor to_qint8() const;
  // Float32 scales per output channel (per-tensor scales repeated), as quantx::*_prepack take.
  at::Tensor channel_scales() const;
};

// Quantizes `weight` (float32, output channels on dim 0) with the qparams torch.ao's weight
// observers choose for the spec's range (kernels/qparams.h), rounded by Note [Rounding]. This is
// the one weight quantization of convert, dynamic quantization, bias correction and AdaRound.
QuantizedWeight quantize_weight(const at::Tensor& weight, const WeightSpec& spec);

// Shorthand for 8-bit symmetric weights as a qint8 tensor.
inline at::Tensor quantize_weight_int8(const at::Tensor& weight, bool per_channel) {
  return quantize_weight(weight, WeightSpec{8, per_channel, true}).to_qint8();
}

// Calls an operator by name through the dispatcher and returns its first output.
c10::IValue call_op(const char* name, std::vector<c10::IValue> args);

// Registers `packed` as a new `_tqx_packed_N` attribute and inserts its GetAttr at the graph's
// current insertion point.
torch::jit::Value* add_packed_attr(torch::jit::Module& module, torch::jit::Graph& graph, const c10::IValue& packed);

// Selects a PyTorch quantized engine ("onednn", "qnnpack") for its lifetime; packed weights are
// engine-specific, so packing happens under the engine the model will run with.
class EngineGuard {
 public:
  explicit EngineGuard(const std::string& engine);
  ~EngineGuard();
  EngineGuard(const EngineGuard&) = delete;
  EngineGuard& operator=(const EngineGuard&) = delete;

 private:
  int previous_;
};

}  // namespace tqx::passes
