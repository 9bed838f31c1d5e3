// Weight quantization, operator calls by name, packed-weight attributes, engine selection.
#include "passes/weights.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/quantize_per_channel.h>
#include <ATen/ops/quantize_per_tensor.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>

#include "kernels/qparams.h"
#include "kernels/reduce.h"
#include "passes/graph_utils.h"

namespace tqx::passes {

at::Tensor quantize_weight_int8(const at::Tensor& weight, bool per_channel) {
  const at::Tensor w = weight.contiguous();
  const int64_t channels = per_channel ? w.size(0) : 1;
  const int64_t per = w.numel() / channels;
  std::vector<float> lo(channels), hi(channels), scale(channels);
  std::vector<int64_t> zp(channels);
  for (int64_t c = 0; c < channels; ++c) {
    kernels::reduce_kernels().f32_minmax(per, w.data_ptr<float>() + c * per, &lo[c], &hi[c]);
  }
  kernels::choose_qparams_per_channel(lo.data(), hi.data(), channels, -128, 127, /*symmetric=*/true,
                                      kernels::kDefaultScaleEps, scale.data(), zp.data());
  if (!per_channel) return at::quantize_per_tensor(w, scale[0], zp[0], c10::kQInt8);
  at::Tensor s = at::empty({channels}, at::TensorOptions().dtype(c10::kDouble));
  at::Tensor z = at::empty({channels}, at::TensorOptions().dtype(c10::kLong));
  std::copy(scale.begin(), scale.end(), s.data_ptr<double>());
  std::copy(zp.begin(), zp.end(), z.data_ptr<int64_t>());
  return at::quantize_per_channel(w, s, z, 0, c10::kQInt8);
}

c10::IValue call_op(const char* name, std::vector<c10::IValue> args) {
  const auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
  torch::jit::Stack stack(std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
  handle.callBoxed(&stack);
  return stack.at(0);
}

torch::jit::Value* add_packed_attr(torch::jit::Module& module, torch::jit::Graph& graph, const c10::IValue& packed) {
  int64_t n = 0;
  while (module.hasattr(kPackedPrefix + std::to_string(n))) ++n;
  const std::string attr = kPackedPrefix + std::to_string(n);
  module.register_attribute(attr, packed.type(), packed);
  return graph.insertGetAttr(graph.inputs().at(0), attr);
}

EngineGuard::EngineGuard(const std::string& engine) : previous_(static_cast<int>(at::globalContext().qEngine())) {
  const at::QEngine e = engine == "qnnpack" ? at::QEngine::QNNPACK : at::QEngine::ONEDNN;
  const auto& supported = at::globalContext().supportedQEngines();
  TORCH_CHECK(std::find(supported.begin(), supported.end(), e) != supported.end(),
              "torchquantx: quantized engine '", engine, "' is not available in this PyTorch build");
  at::globalContext().setQEngine(e);
}

EngineGuard::~EngineGuard() { at::globalContext().setQEngine(static_cast<at::QEngine>(previous_)); }

}  // namespace tqx::passes
