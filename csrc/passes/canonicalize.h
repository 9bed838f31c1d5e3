// Canonicalize: a frozen, inlined, mutation-free copy of an eval-mode module, BatchNorm folded.
//
// Before (scripted module):   forward calls self.conv1.forward, self.bn1.forward, relu_(x)
// After  (one flat graph):    %w : Tensor = prim::Constant[value=<folded weight>]()
//                             %y = aten::conv2d(%x, %w, %b, ...)   (bn folded into %w, %b)
//                             %z = aten::relu(%y)                  (in-place forms made functional)
// Dropout is removed, constants propagated, training-only branches gone. The input is not changed.
#pragma once

#include <torch/csrc/jit/api/module.h>

#include <functional>

namespace tqx::passes {

// Optional: sees the graph just before BatchNorm is folded (inlined, functional), for passes that
// need what folding erases (equalize.cpp records BatchNorm statistics); convolution nodes keep
// their identity through the folding.
using BeforeBatchNormFold = std::function<void(torch::jit::Graph&)>;

torch::jit::Module canonicalize(const torch::jit::Module& module, const BeforeBatchNormFold& hook = nullptr);

// The cleanup part alone, for graphs (used by tests and after other passes).
void canonicalize_graph(std::shared_ptr<torch::jit::Graph>& graph, const BeforeBatchNormFold& hook = nullptr);

}  // namespace tqx::passes
