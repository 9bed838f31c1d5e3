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
    const c10::IValue packed = call_op("quantized::linear_prepack", {quantize_weight(w, WeightSpec{8, weight_per_channel, true}).to_qint8(), b});
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

namespace {

// One CellParamsBase per layer and direction, from the flat [w_ih, w_hh, b_ih, b_hh] * n list.
c10::optional<c10::IValue> rnn_cell_params(const std::vector<at::Tensor>& flat, bool has_biases, int64_t layers,
                                           bool bidirectional, bool reduce_range) {
  const size_t per = has_biases ? 4 : 2;
  const size_t cells = static_cast<size_t>(layers) * (bidirectional ? 2 : 1);
  if (flat.size() != per * cells) return c10::nullopt;  // e.g. LSTM with proj_size
  c10::impl::GenericList params(c10::AnyType::get());
  c10::TypePtr cell_type;
  for (size_t c = 0; c < cells; ++c) {
    const at::Tensor& w_ih = flat[c * per];
    const at::Tensor& w_hh = flat[c * per + 1];
    const at::Tensor b_ih = has_biases ? flat[c * per + 2] : at::Tensor();
    const at::Tensor b_hh = has_biases ? flat[c * per + 3] : at::Tensor();
    // Per-tensor int8 weights, as torch.ao's dynamic RNN modules use.
    const c10::IValue ih = call_op("quantized::linear_prepack", {quantize_weight(w_ih, WeightSpec{8, false, true}).to_qint8(), b_ih});
    const c10::IValue hh = call_op("quantized::linear_prepack", {quantize_weight(w_hh, WeightSpec{8, false, true}).to_qint8(), b_hh});
    c10::IValue cell =
        call_op("quantized::make_quantized_cell_params_dynamic", {ih, hh, b_ih, b_hh, reduce_range});
    cell_type = cell.type();
    params.push_back(cell);
  }
  params.unsafeSetElementType(cell_type);
  return c10::IValue(params);
}

}  // namespace

int64_t quantize_dynamic_rnn(torch::jit::Module& module, bool reduce_range, const std::string& engine,
                             std::string* report) {
  auto graph = module.get_method("forward").graph();
  const c10::Symbol lstm = c10::aten::lstm, gru = c10::aten::gru;
  std::vector<torch::jit::Node*> rnns;
  for_each_node(graph->block(), [&](torch::jit::Node* n) {
    if ((n->kind() == lstm || n->kind() == gru) && n->inputs().size() == 9) rnns.push_back(n);
  });
  const EngineGuard guard(engine);
  int64_t count = 0;
  for (torch::jit::Node* n : rnns) {
    const auto params = torch::jit::toIValue(n->input(2));
    const auto has_biases = torch::jit::toIValue(n->input(3));
    const auto layers = torch::jit::toIValue(n->input(4));
    const auto bidirectional = torch::jit::toIValue(n->input(7));
    if (!params || !params->isTensorList() || !has_biases || !layers || !bidirectional) continue;
    const auto cells = rnn_cell_params(params->toTensorVector(), has_biases->toBool(), layers->toInt(),
                                       bidirectional->toBool(), reduce_range);
    if (!cells) continue;
    torch::jit::WithInsertPoint point(n);
    int64_t id = 0;
    while (module.hasattr(std::string(kPackedPrefix) + "rnn_" + std::to_string(id))) ++id;
    const std::string attr = std::string(kPackedPrefix) + "rnn_" + std::to_string(id);
    module.register_attribute(attr, cells->type(), *cells);
    std::vector<torch::jit::Value*> inputs(n->inputs().begin(), n->inputs().end());
    inputs[2] = graph->insertGetAttr(graph->inputs().at(0), attr);
    const bool is_lstm = n->kind() == lstm;
    if (is_lstm) {
      inputs.push_back(graph->insertConstant(static_cast<int64_t>(c10::kQInt8)));
      inputs.push_back(graph->insertConstant(true));
    }
    torch::jit::Node* q = graph->create(is_lstm ? c10::Symbol::fromQualString("aten::quantized_lstm")
                                                : c10::Symbol::fromQualString("aten::quantized_gru"),
                                        inputs, n->outputs().size());
    graph->insertNode(q);
    for (size_t i = 0; i < n->outputs().size(); ++i) {
      q->output(i)->setType(n->output(i)->type());
      n->output(i)->replaceAllUsesWith(q->output(i));
    }
    if (report) {
      const std::string layer = layer_of(n);
      *report += (layer.empty() ? "<top>" : layer) + "  " + n->kind().toQualString() + " -> " +
                 q->kind().toQualString() + " (dynamic int8 weights)\n";
    }
    n->destroy();
    ++count;
  }
  torch::jit::EliminateDeadCode(graph);
  return count;
}

}  // namespace tqx::passes
