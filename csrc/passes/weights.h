// Weight quantization and packing shared by the convert and dynamic-quantization passes.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/jit/api/module.h>

#include <string>
#include <vector>

namespace tqx::passes {

// Symmetric int8 weights as a PyTorch quantized tensor (qint8), per output channel (axis 0) or
// per tensor, with the qparams torch.ao's default weight observers choose.
at::Tensor quantize_weight_int8(const at::Tensor& weight, bool per_channel);

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
