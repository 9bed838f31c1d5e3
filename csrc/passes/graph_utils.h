// Small helpers the passes share: layer names from inlined call stacks, graph walking.
#pragma once

#include <torch/csrc/jit/ir/ir.h>

#include <functional>
#include <string>
#include <vector>

namespace tqx::passes {

// The dotted module path a node came from ("layer1.0.conv1"), from its inlined call stack;
// "" for nodes of the top-level forward.
std::string layer_of(const torch::jit::Node* node);
// The class names ("BasicBlock", "ResNet") of the modules on a node's inlined call stack.
std::vector<std::string> module_types_of(const torch::jit::Node* node);
// A human-readable place for a value: "<layer> (<op>)" of its producer, or the input's name.
std::string describe_value(const torch::jit::Value* value);

// Calls fn on every node of block and its sub-blocks, in order (nodes may not be destroyed).
void for_each_node(torch::jit::Block* block, const std::function<void(torch::jit::Node*)>& fn);
// The nodes of one kind in block and its sub-blocks, in for_each_node's order (a pass's worklist).
std::vector<torch::jit::Node*> nodes_of_kind(torch::jit::Block* block, c10::Symbol kind);

// True for `self._tqx_obs_N.forward(v)`, an observer call inserted by prepare.
bool is_observer_call(const torch::jit::Node* node);
// Removes every observer call of a graph (blocks included), sending its uses to the observed
// value: the float computation of a prepared module, recording nothing.
void bypass_observers(torch::jit::Graph& graph);

// Prefix used for every attribute the passes add to a module.
constexpr const char* kObserverPrefix = "_tqx_obs_";
constexpr const char* kPackedPrefix = "_tqx_packed_";
constexpr const char* kQConfigAttr = "_tqx_qconfig";
constexpr const char* kSummaryAttr = "_tqx_summary";

}  // namespace tqx::passes
