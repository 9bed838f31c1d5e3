// Cross-layer equalization and high-bias absorption (Nagel et al., "Data-Free Quantization
// Through Weight Equalization and Bias Correction", ICCV 2019) on a canonicalized graph.
//
// Before:  %y1 = aten::conv2d(%x, %w1, %b1, ...)      per-channel ranges of %w1: 0.01 .. 50
//          %a  = aten::relu(%y1)                      (or relu6 -> relu, pooling, flatten)
//          %y2 = aten::conv2d(%a, %w2, %b2, ...)      (or a depthwise conv, or aten::linear)
// After:   %y1 = aten::conv2d(%x, %w1', %b1', ...)    w1' = w1 / s (output channel i), b1' = b1 / s - c
//          %a  = aten::relu(%y1)
//          %y2 = aten::conv2d(%a, %w2', %b2', ...)    w2' = w2 * s (input channel i), b2' = b2 + w2' c
// with s_i = sqrt(r1_i r2_i) / r2_i, r = per-channel max |w|, so channel i of w1' and of w2' have
// the same range. relu(x / s) = relu(x) / s for s > 0, so the float function is unchanged;
// chains through a depthwise conv are swept until the scales converge. c (high-bias absorption)
// is max(0, beta - 3|gamma|) from the BatchNorm folded into layer 1: relu(y - c) = relu(y) - c
// whenever y >= c, which holds for all but ~0.1% of a N(beta, gamma^2) pre-activation.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace tqx::passes {

// Per-output-channel distribution N(mean, std^2) of a layer's output before its activation,
// known from the BatchNorm folded into it (mean = beta, std = |gamma|).
struct PreActivation {
  at::Tensor mean;  // float64 [C]
  at::Tensor std;   // float64 [C]
};
using PreActivationMap = std::unordered_map<const torch::jit::Node*, PreActivation>;

// The convolution and linear nodes with a constant weight, in graph order: the "layers" the
// recovery passes rewrite (an index into this list names a layer across copies of one graph).
std::vector<torch::jit::Node*> weighted_layers(torch::jit::Graph& graph);

// flatten(x, 1), x.view(x.size(0), -1) or x.reshape(x.size(0), -1) of `in`: (N, C, ...) -> (N, C * taps).
bool is_batch_flatten(const torch::jit::Node* n, const torch::jit::Value* in);

// canonicalize() that also records, for each convolution a BatchNorm was folded into, that
// BatchNorm's statistics (keyed by the convolution node of the returned module). A module made by
// equalize carries its (rescaled) statistics as the attribute _tqx_preactivation; those are read
// instead. The result has a `training` attribute (false), so it can be canonicalized again.
torch::jit::Module canonicalize_with_preactivation(const torch::jit::Module& module, PreActivationMap* stats);

// Stores `stats` as the module attribute _tqx_preactivation (Dict[int, Tensor[2, C]], keyed by
// index in weighted_layers), so a later pass on this module (analytic bias correction) finds them.
void store_preactivation(torch::jit::Module& module, const PreActivationMap& stats);

struct EqualizeOptions {
  // ReLU6 is not positively homogeneous: chains through one are left alone unless it may become a
  // ReLU (the paper's choice for MobileNetV2). That changes the float function wherever an
  // activation exceeded 6.
  bool relu6_to_relu = false;
  // Absorb max(0, beta - 3|gamma|) of layer 1's bias into layer 2 where BatchNorm statistics are
  // known, layer 1 is followed by a ReLU and layer 2 has no zero padding.
  bool absorb_high_bias = true;
  int64_t max_iterations = 100;
  double tolerance = 1e-5;  // stop when every scale of a sweep is within 1 +- tolerance
};

struct EqualizeReport {
  int64_t pairs = 0;           // layer pairs equalized
  int64_t iterations = 0;      // sweeps over all pairs
  int64_t absorbed = 0;        // pairs whose layer-1 bias moved partly into layer 2
  int64_t relu6_replaced = 0;  // relu6 / hardtanh(0, 6) nodes turned into relu
  int64_t relu6_skipped = 0;   // pairs left alone because of a relu6 (relu6_to_relu off)
};

// Equalizes every conv/linear pair of a canonicalized graph in place (new weight constants,
// never mutated tensors). `stats` may be null; when given, it is updated to the new graph.
EqualizeReport equalize_graph(torch::jit::Graph& graph, const EqualizeOptions& options, PreActivationMap* stats);

}  // namespace tqx::passes
