// Accuracy recovery for C++ applications: cross-layer equalization and bias correction.
//
//   torch::jit::Module eq = torchquantx::equalize(model);                 // before prepare
//   torch::jit::Module prepared = torchquantx::prepare(eq, "qnnpack");
//   prepared = torchquantx::bias_correction(prepared, batches);           // batches of inputs
//   ... calibrate prepared ..., torchquantx::convert(prepared)
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/jit/api/module.h>

#include <string>
#include <vector>

namespace torchquantx {

// A canonicalized float copy of `model` (eval mode) whose conv/linear pairs are rescaled so that
// their per-channel weight ranges match (Nagel et al. 2019). The float function is unchanged,
// except: relu6_to_relu turns ReLU6 between equalized layers into ReLU (chains through a ReLU6 are
// otherwise skipped), and absorb_high_bias (data-free, from folded BatchNorm statistics) changes
// outputs whose pre-activation fell below beta - 3|gamma|.
torch::jit::Module equalize(const torch::jit::Module& model, bool relu6_to_relu = false, bool absorb_high_bias = true);

// Empirical bias correction: for every conv/linear whose weights convert will quantize,
// bias -= (W_q - W) E[x], E[x] the per-input-channel mean of its float input over `batches`
// (each a list of forward arguments). `model`: a prepared module (its qconfig decides per-channel
// or per-tensor weights; qconfig must then be "") or a float model, canonicalized first and
// quantized as `qconfig` says ("" = "x86"). Returns a corrected copy.
torch::jit::Module bias_correction(const torch::jit::Module& model,
                                   const std::vector<std::vector<c10::IValue>>& batches,
                                   const std::string& qconfig = "");

// Data-free bias correction: E[x] of a layer fed by a BatchNorm-folded convolution through
// ReLU/ReLU6/clamp (and mean-preserving pooling/flatten) is the mean of a clamped
// N(beta, gamma^2). Layers fed otherwise (e.g. by the model input) are left as they are.
// `model`: a float model or the result of equalize (a prepared module no longer knows its
// BatchNorm statistics).
torch::jit::Module bias_correction_analytic(const torch::jit::Module& model, const std::string& qconfig = "");

// The two halves of bias_correction, for streaming data: the probe's forward takes the model's
// inputs and returns (sums, counts): per corrected layer, the float64 per-input-channel sums of its
// input and how many values each sum adds. bias_correction_apply takes their totals divided
// (sums / counts, one tensor per layer in the probe's order; an empty tensor skips a layer).
torch::jit::Module bias_correction_probe(const torch::jit::Module& model, const std::string& qconfig = "");
torch::jit::Module bias_correction_apply(const torch::jit::Module& model, const std::vector<at::Tensor>& input_means,
                                         const std::string& qconfig = "");

}  // namespace torchquantx
