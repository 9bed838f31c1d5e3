// AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML
// 2020): per conv/linear, learns whether each weight rounds up or down so that the layer's
// output on calibration data moves least, then snaps the weights onto their quantization grid.
//
// Before:  %y = aten::conv2d(%x, %w, %b, ...)
// After:   %y = aten::conv2d(%x, %w', %b, ...)     w' = s * (clamp(floor(w / s) + h + zp) - zp)
//
// s, zp: exactly the qparams convert chooses for the qconfig's WeightSpec (quantize_weight).
// h in {0, 1} per weight: the hard rounding of a rectified sigmoid h(V) = clamp(sigmoid(V) * 1.2
// - 0.1, 0, 1), V minimising ||W x - W~(V) x||^2 (summed over output channels, averaged over
// sampled input rows x) + reg * sum(1 - |2 h(V) - 1|^beta), beta annealed 20 -> 2 after a warm-up
// without the regulariser, by Adam. x: the layer's FLOAT input (the float model's previous
// layers, not their quantized outputs: simpler, one pass over the data for all layers).
//
// Convert must reproduce the learned integers with its own round-to-nearest: the elements
// holding a channel's min and max (which set s and zp) keep their original values (so the
// qparams are bit-identical) and their nearest integers; every other element lands exactly on a
// grid point inside [min, max], so round-to-nearest returns it. The pass checks this per layer.
// A layer whose learned rounding is no better than round-to-nearest on the sampled rows keeps
// its weights. Layers inside control-flow blocks, and convs with string padding, are left alone.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdint>
#include <string>
#include <vector>

#include "api/recovery.h"
#include "passes/qconfig.h"

namespace tqx::passes {

using torchquantx::AdaRoundOptions;

// A module whose forward takes `module`'s inputs, runs its float computation (observers
// bypassed) and returns the input tensor of every target (correction_targets order; an empty
// tensor for targets inside control-flow blocks).
torch::jit::Module make_adaround_probe(const torch::jit::Module& module, const QConfig& qconfig, bool prepared);

// Up to max_rows rows of `layer`'s GEMM input drawn uniformly from `x` (its input tensor):
// [groups, rows, in_channels / groups * taps]; undefined when the layer's form is not handled.
at::Tensor sample_input_rows(const torch::jit::Node* layer, const at::Tensor& x, int64_t max_rows, at::Generator gen);

struct AdaRoundLayer {
  at::Tensor weight;  // on the grid; the input weight when round-to-nearest was kept
  double mse_nearest = 0, mse_adaround = 0;  // mean squared output error per output value
  bool kept_nearest = false;
};

// Learns the rounding of one weight [out, in / groups, taps...] from input rows [groups, m, k].
AdaRoundLayer adaround_weight(const at::Tensor& weight, const at::Tensor& rows, const WeightSpec& spec,
                              const AdaRoundOptions& options);

}  // namespace tqx::passes
