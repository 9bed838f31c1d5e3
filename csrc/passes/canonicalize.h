// Canonicalize: a frozen, inlined, mutation-free copy of an eval-mode module, BatchNorm folded.
//
// Before (scripted module):   forward calls self.conv1.forward, self.bn1.forward, relu_(x)
// After  (one flat graph):    %w : Tensor = prim::Constant[value=<folded weight>]()
//                             %y = aten::conv2d(%x, %w, %b, ...)   (bn folded into %w, %b)
//                             %z = aten::relu(%y)                  (in-place forms made functional)
// Dropout is removed, constants propagated, training-only branches gone. The input is not changed.
#pragma once

#include <torch/csrc/jit/api/module.h>

namespace tqx::passes {

torch::jit::Module canonicalize(const torch::jit::Module& module);

// The cleanup part alone, for graphs (used by tests and after other passes).
void canonicalize_graph(std::shared_ptr<torch::jit::Graph>& graph);

}  // namespace tqx::passes
