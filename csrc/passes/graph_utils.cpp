// Layer naming and graph walking for the passes.
#include "passes/graph_utils.h"

#include <torch/csrc/jit/ir/scope.h>

namespace tqx::passes {

std::string layer_of(const torch::jit::Node* node) {
  auto cs = node->callstack();
  if (!cs) return "";
  std::string path;
  for (const auto& entry : (*cs)->vec()) {
    const auto& info = std::get<torch::jit::kModuleInstanceInfo>(entry);
    if (!info) continue;
    const std::string name = info->instance_name();
    if (name.empty() || name == "SELF") continue;  // the top-level module itself
    path += path.empty() ? name : "." + name;
  }
  return path;
}

std::vector<std::string> module_types_of(const torch::jit::Node* node) {
  std::vector<std::string> types;
  auto cs = node->callstack();
  if (!cs) return types;
  for (const auto& entry : (*cs)->vec()) {
    const auto& info = std::get<torch::jit::kModuleInstanceInfo>(entry);
    if (info && info->class_type() && info->class_type()->name()) {
      types.push_back(info->class_type()->name()->name());
    }
  }
  return types;
}

std::string describe_value(const torch::jit::Value* value) {
  const torch::jit::Node* n = value->node();
  if (n->kind() == c10::prim::Param) return "input '" + value->debugNameBase() + "'";
  const std::string layer = layer_of(n);
  return (layer.empty() ? std::string("<top>") : layer) + " (" + n->kind().toQualString() + ")";
}

void for_each_node(torch::jit::Block* block, const std::function<void(torch::jit::Node*)>& fn) {
  for (torch::jit::Node* n : block->nodes()) {
    fn(n);
    for (torch::jit::Block* b : n->blocks()) for_each_node(b, fn);
  }
}

std::vector<torch::jit::Node*> nodes_of_kind(torch::jit::Block* block, c10::Symbol kind) {
  std::vector<torch::jit::Node*> out;
  for_each_node(block, [&](torch::jit::Node* n) {
    if (n->kind() == kind) out.push_back(n);
  });
  return out;
}

bool is_observer_call(const torch::jit::Node* n) {
  if (n->kind() != c10::prim::CallMethod || n->input(0)->node()->kind() != c10::prim::GetAttr) return false;
  return n->input(0)->node()->s(c10::attr::name).rfind(kObserverPrefix, 0) == 0;
}

void bypass_observers(torch::jit::Graph& graph) {
  std::vector<torch::jit::Node*> calls;
  for_each_node(graph.block(), [&](torch::jit::Node* n) {
    if (is_observer_call(n)) calls.push_back(n);
  });
  for (torch::jit::Node* call : calls) {  // observers return their input
    call->output()->replaceAllUsesWith(call->input(1));
    call->destroy();
  }
}

}  // namespace tqx::passes
