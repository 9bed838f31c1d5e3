// Dynamic quantization of linear layers onto quantized::linear_dynamic.
#include "passes/quantize_dynamic.h"

#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <vector>

#include "passes/graph_utils.h"
#include "passes/weights.h"

namespace tqx::passes {

int64_t quantize_dynamic_linear(torch::jit::Module& module, bool weight_per_channel, bool reduce_range,
                                const std::string& engine, std::string* report) {
  auto graph = module.get_method("forward").graph();
  std::vector<torch::jit::Node*> linears;
  for_each_node(graph->block(), [&](torch::jit::Node* n) {
    if (n->kind() != c10::aten::linear) return;
    const auto w = torch::jit::toIValue(n->input(1));
    const auto b = torch::jit::toIValue(n->input(2));
    if (w && w->isTensor() && b && (b->isNone() || b->isTensor())) linears.push_back(n);
  });
  const EngineGuard guard(engine);
  for (torch::jit::Node* n : linears) {
    const auto w = torch::jit::toIValue(n->input(1))->toTensor();
    const auto b = *torch::jit::toIValue(n->input(2));
    const c10::IValue packed = call_op("quantized::linear_prepack", {quantize_weight_int8(w, weight_per_channel), b});
    torch::jit::WithInsertPoint point(n);
    torch::jit::Value* p = add_packed_attr(module, *graph, packed);
    torch::jit::Node* dyn = graph->create(c10::Symbol::fromQualString("quantized::linear_dynamic"),
                                          {n->input(0), p, graph->insertConstant(reduce_range)});
    dyn->output()->setType(c10::TensorType::get());
    graph->insertNode(dyn);
    n->output()->replaceAllUsesWith(dyn->output());
    if (report) {
      const std::string layer = layer_of(n);
      *report += (layer.empty() ? "<top>" : layer) + "  aten::linear -> quantized::linear_dynamic\n";
    }
    n->destroy();
  }
  torch::jit::EliminateDeadCode(graph);
  return static_cast<int64_t>(linears.size());
}

}  // namespace tqx::passes
