// Bias correction (Nagel et al., "Data-Free Quantization", ICCV 2019, section 4.2): removes the
// mean output error that weight quantization adds to each conv/linear.
//
// Before:  %y = aten::conv2d(%x, %w, %b, ...)
// After:   %y = aten::conv2d(%x, %w, %b', ...)     b' = b - (Q(w) - w) E[x]
//
// Q(w): the weights exactly as convert will quantize them (quantize_weight with the qconfig's
// WeightSpec: bits, per channel or per tensor, symmetric or affine). E[x]: the per-input-channel mean of the layer's float input,
// from calibration data (empirical) or from the BatchNorm statistics of the layer feeding it
// (analytic: the mean of a clamped N(beta, gamma^2)). For a conv, output o's error is
// sum_{i, taps} dW[o, i, t] E[x_i]: every tap is taken to see its channel's mean, which ignores
// the zeros a padded conv reads at the borders (an approximation that is exact for unpadded
// convs and 1x1 convs). Layers inside control-flow blocks are not corrected.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdint>
#include <vector>

#include "passes/equalize.h"
#include "passes/qconfig.h"

namespace tqx::passes {

// The conv/linear nodes whose weights convert will quantize, in graph order: in a prepared
// module those whose input is observed (directly or through same-qparams ops), otherwise those the registry quantizes and `qconfig`
// does not skip.
std::vector<torch::jit::Node*> correction_targets(torch::jit::Graph& graph, const QConfig& qconfig, bool prepared);

// A module whose forward takes `module`'s inputs, runs its float computation (observers
// bypassed, so nothing is recorded) and returns (sums, counts): for each correction target, the
// float64 per-input-channel sum of its input and the number of values in each sum.
torch::jit::Module make_bias_probe(const torch::jit::Module& module, const QConfig& qconfig, bool prepared);

// E[x] of each target from the statistics of the layer feeding it through relu / relu6 /
// hardtanh / clamp and mean-preserving ops (average pooling, spatial mean, flatten); an undefined
// tensor where that is not known.
std::vector<at::Tensor> analytic_input_means(const std::vector<torch::jit::Node*>& targets,
                                             const PreActivationMap& stats);

// b -= (Q(W) - W) E[x] for every target whose mean is defined and not empty; returns how many
// biases changed. Throws when a mean's length is not the layer's input channel count.
int64_t correct_biases(torch::jit::Graph& graph, const std::vector<torch::jit::Node*>& targets,
                       const std::vector<at::Tensor>& input_means, const WeightSpec& weight_spec);

}  // namespace tqx::passes
