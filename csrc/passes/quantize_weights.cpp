// Weight-only quantization with dequantize-at-load through TorchScript __getstate__/__setstate__.
#include "passes/quantize_weights.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <sstream>
#include <vector>

#include "kernels/qparams.h"
#include "kernels/quantize.h"
#include "kernels/reduce.h"
#include "passes/graph_utils.h"
#include "passes/op_registry.h"

namespace tqx::passes {
namespace {

struct Quantized {
  at::Tensor values;  // int8 or int16, the weight's shape
  at::Tensor scales;  // float32 [out_channels]
};

// Symmetric per-output-channel quantization with the rule of Note [Rounding].
Quantized quantize(const at::Tensor& weight, int64_t bits) {
  const at::Tensor w = weight.contiguous();
  const int64_t channels = w.size(0), per = w.numel() / channels;
  const int64_t qmax = bits == 8 ? 127 : 32767, qmin = -qmax - 1;
  Quantized q{at::empty(w.sizes(), w.options().dtype(bits == 8 ? c10::kChar : c10::kShort)),
              at::empty({channels}, w.options())};
  const auto& k = kernels::quantize_kernels();
  for (int64_t c = 0; c < channels; ++c) {
    const float* src = w.data_ptr<float>() + c * per;
    float lo, hi;
    kernels::reduce_kernels().f32_minmax(per, src, &lo, &hi);
    const kernels::QParams p = kernels::choose_qparams(lo, hi, qmin, qmax, /*symmetric=*/true);
    q.scales.data_ptr<float>()[c] = p.scale;
    const auto ap = kernels::make_affine_params(p.scale, 0, static_cast<int32_t>(qmin), static_cast<int32_t>(qmax));
    if (bits == 8) {
      k.f32_s8_quantize(per, src, q.values.data_ptr<int8_t>() + c * per, ap);
    } else {
      k.f32_s16_quantize(per, src, q.values.data_ptr<int16_t>() + c * per, ap);
    }
  }
  return q;
}

// float(q) * scale in float32: the dequantize rule for zero point 0, written with aten ops so the
// saved file needs no torchquantx to load.
at::Tensor dequantize(const Quantized& q) {
  std::vector<int64_t> shape(q.values.dim(), 1);
  shape[0] = q.values.size(0);
  return at::mul(q.values.to(c10::kFloat), q.scales.view(shape));
}

}  // namespace

int64_t quantize_weights_only(torch::jit::Module& module, int64_t bits, std::string* report) {
  std::string lines;
  TORCH_CHECK(bits == 8 || bits == 16, "torchquantx.quantize_weights: bits should be 8 or 16, got ", bits);
  for (size_t i = 0; i < module.type()->numAttributes(); ++i) {
    const std::string name = module.type()->getAttributeName(i);
    TORCH_CHECK(name == "training", "torchquantx.quantize_weights: the frozen model keeps attribute '", name,
                "', which weight-only quantization cannot save yet");
  }
  auto graph = module.get_method("forward").graph();
  std::vector<torch::jit::Node*> nodes;
  for_each_node(graph->block(), [&](torch::jit::Node* n) {
    const OpRule* rule = find_rule(n);
    if (rule && rule->weight >= 0) nodes.push_back(n);
  });
  std::ostringstream get, set;
  const int64_t count = static_cast<int64_t>(nodes.size());
  for (int64_t i = 0; i < count; ++i) {
    torch::jit::Node* n = nodes[i];
    const int weight_index = find_rule(n)->weight;
    const Quantized q = quantize(torch::jit::toIValue(n->input(weight_index))->toTensor(), bits);
    const std::string id = std::to_string(i);
    module.register_attribute("_tqx_wq_" + id, c10::TensorType::get(), q.values);
    module.register_attribute("_tqx_ws_" + id, c10::TensorType::get(), q.scales);
    module.register_attribute("_tqx_w_" + id, c10::TensorType::get(), dequantize(q));
    torch::jit::WithInsertPoint point(n);
    n->replaceInput(weight_index, graph->insertGetAttr(graph->inputs().at(0), "_tqx_w_" + id));
    get << (i ? ", " : "") << "self._tqx_wq_" << id << ", self._tqx_ws_" << id;
    set << "    self._tqx_wq_" << id << " = state[0][" << 2 * i << "]\n"
        << "    self._tqx_ws_" << id << " = state[0][" << 2 * i + 1 << "]\n"
        << "    self._tqx_w_" << id << " = self._tqx_wq_" << id << ".float() * self._tqx_ws_" << id
        << ".view([-1] + [1] * (self._tqx_wq_" << id << ".dim() - 1))\n";
    const std::string layer = layer_of(n);
    lines += (layer.empty() ? "<top>" : layer) + "  " + n->kind().toQualString() + " -> float kernel, int" +
             std::to_string(bits) + " weights dequantized at load\n";
  }
  torch::jit::EliminateDeadCode(graph);
  const std::string summary = "weight-only int" + std::to_string(bits) + "\n" + lines;
  module.register_attribute(kSummaryAttr, c10::StringType::get(), summary);
  if (report) *report += lines;
  // Only the integer weights are saved; the float copies are rebuilt once, when the file loads.
  const bool training = module.hasattr("training");
  module.define("def __getstate__(self) -> Tuple[List[Tensor], bool, str]:\n    return ([" + get.str() + "], " +
                (training ? "self.training" : "False") + ", self." + kSummaryAttr + ")\n");
  module.define("def __setstate__(self, state: Tuple[List[Tensor], bool, str]) -> None:\n" + set.str() +
                (training ? "    self.training = state[1]\n" : "") + "    self." + kSummaryAttr + " = state[2]\n");
  return count;
}

}  // namespace tqx::passes
