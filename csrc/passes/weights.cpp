// Weight quantization (4/8/16 bits, symmetric or affine), operator calls by name, packed-weight attributes, engine selection.
#include "passes/weights.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/_make_per_channel_quantized_tensor.h>
#include <ATen/ops/_make_per_tensor_quantized_tensor.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>

#include "kernels/qparams.h"
#include "kernels/quantize.h"
#include "kernels/reduce.h"
#include "passes/graph_utils.h"

namespace tqx::passes {

QuantizedWeight quantize_weight(const at::Tensor& weight, const WeightSpec& spec) {
  TORCH_CHECK(spec.bits == 4 || spec.bits == 8 || spec.bits == 16, "torchquantx: weight bits should be 4, 8 or 16, got ",
              spec.bits);
  TORCH_CHECK(weight.scalar_type() == c10::kFloat && weight.dim() >= 1,
              "torchquantx: weights to quantize should be float32 with output channels on dim 0, got ",
              weight.scalar_type(), " of shape ", weight.sizes());
  const at::Tensor w = weight.contiguous();
  const int64_t channels = spec.per_channel ? w.size(0) : 1;
  const int64_t per = channels == 0 ? 0 : w.numel() / channels;
  std::vector<float> lo(channels), hi(channels), scale(channels);
  std::vector<int64_t> zp(channels);
  for (int64_t c = 0; c < channels; ++c) {
    kernels::reduce_kernels().f32_minmax(per, w.data_ptr<float>() + c * per, &lo[c], &hi[c]);
  }
  kernels::choose_qparams_per_channel(lo.data(), hi.data(), channels, spec.qmin(), spec.qmax(), spec.symmetric,
                                      kernels::kDefaultScaleEps, scale.data(), zp.data());
  QuantizedWeight q;
  q.spec = spec;
  q.values = at::empty(w.sizes(), at::TensorOptions().dtype(c10::kShort));
  q.scale = at::empty({channels}, at::TensorOptions().dtype(c10::kDouble));
  q.zero_point = at::empty({channels}, at::TensorOptions().dtype(c10::kLong));
  const auto& k = kernels::quantize_kernels();
  for (int64_t c = 0; c < channels; ++c) {
    const auto p = kernels::make_affine_params(scale[c], static_cast<int32_t>(zp[c]), static_cast<int32_t>(spec.qmin()),
                                               static_cast<int32_t>(spec.qmax()));
    k.f32_s16_quantize(per, w.data_ptr<float>() + c * per, q.values.data_ptr<int16_t>() + c * per, p);
    q.scale.data_ptr<double>()[c] = scale[c];
    q.zero_point.data_ptr<int64_t>()[c] = zp[c];
  }
  return q;
}

at::Tensor QuantizedWeight::dequantize() const {
  const int64_t channels = scale.numel();
  at::Tensor out = at::empty(values.sizes(), at::TensorOptions().dtype(c10::kFloat));
  const int64_t per = channels == 0 ? 0 : values.numel() / channels;
  const auto& k = kernels::quantize_kernels();
  for (int64_t c = 0; c < channels; ++c) {
    const auto p = kernels::make_affine_params(static_cast<float>(scale.data_ptr<double>()[c]),
                                               static_cast<int32_t>(zero_point.data_ptr<int64_t>()[c]),
                                               static_cast<int32_t>(spec.qmin()), static_cast<int32_t>(spec.qmax()));
    k.s16_f32_dequantize(per, values.data_ptr<int16_t>() + c * per, out.data_ptr<float>() + c * per, p);
  }
  return out;
}

at::Tensor QuantizedWeight::to_qint8() const {
  TORCH_CHECK(spec.bits <= 8, "torchquantx: ", spec.bits, "-bit weights have no qint8 form; run them as float");
  const at::Tensor v = values.to(c10::kChar);
  if (!spec.per_channel) {
    return at::_make_per_tensor_quantized_tensor(v, scale.data_ptr<double>()[0], zero_point.data_ptr<int64_t>()[0]);
  }
  return at::_make_per_channel_quantized_tensor(v, scale, zero_point, 0);
}

at::Tensor QuantizedWeight::channel_scales() const {
  const at::Tensor s = scale.to(c10::kFloat);
  return spec.per_channel ? s : s.expand({values.size(0)}).contiguous();
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
