// Canonicalize pass: freeze, inline, name convolutions, functionalize, fold BatchNorm, propagate constants.
#include "passes/canonicalize.h"

#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/frozen_conv_folding.h>
#include <torch/csrc/jit/passes/graph_rewrite_helper.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/peephole.h>
#include <torch/csrc/jit/passes/remove_dropout.h>
#include <torch/csrc/jit/passes/remove_mutation.h>

namespace tqx::passes {

void canonicalize_graph(std::shared_ptr<torch::jit::Graph>& graph, const BeforeBatchNormFold& hook) {
  torch::jit::Inline(*graph);
  // Traced models record aten::_convolution; the registry knows aten::conv1d/conv2d/conv3d.
  torch::jit::graph_rewrite_helper::replaceConvolutionWithAtenConv(graph);
  torch::jit::removeDropout(graph);
  torch::jit::RemoveListMutation(graph);
  torch::jit::RemoveTensorMutation(graph);
  torch::jit::ConstantPropagation(graph);
  torch::jit::PeepholeOptimize(graph);
  if (hook) hook(*graph);
  torch::jit::FoldFrozenConvBatchnorm(graph);
  torch::jit::FoldFrozenConvAddOrSub(graph);
  torch::jit::FoldFrozenConvMulOrDiv(graph);
  torch::jit::ConstantPropagation(graph);
  torch::jit::EliminateDeadCode(graph);
}

torch::jit::Module canonicalize(const torch::jit::Module& module, const BeforeBatchNormFold& hook) {
  TORCH_CHECK(!module.is_training(), "torchquantx.prepare: the model should be in eval mode for post-training "
              "quantization; call model.eval() first (quantization-aware training uses prepare_qat)");
  TORCH_CHECK(module.find_method("forward").has_value(), "torchquantx.prepare: the model has no forward method");
  // Inline a copy before freezing. Inlined nodes keep a call stack that points at the methods they came
  // from; freeze_module inlines its own clone and then deletes that clone's helper methods, so an error
  // raised later inside, say, a `_forward_impl` printed its TorchScript traceback through a dangling
  // pointer and crashed the process. The copy's methods stay alive with its type.
  torch::jit::Module copy = module.clone();
  torch::jit::Inline(*copy.get_method("forward").graph());
  torch::jit::Module frozen = torch::jit::freeze_module(copy, /*preservedAttrs=*/{}, /*freezeInterfaces=*/true,
                                                        /*preserveParameters=*/false);
  auto graph = frozen.get_method("forward").graph();
  canonicalize_graph(graph, hook);
  return frozen;
}

}  // namespace tqx::passes
