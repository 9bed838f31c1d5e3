// Accuracy recovery for C++ applications: cross-layer equalization, AdaRound and bias correction.
//
//   torch::jit::Module eq = torchquantx::equalize(model);                 // before prepare
//   torch::jit::Module prepared = torchquantx::prepare(eq, "qnnpack");
//   prepared = torchquantx::adaround(prepared, batches);                  // batches of inputs
//   prepared = torchquantx::bias_correction(prepared, batches);
//   ... calibrate prepared ..., torchquantx::convert(prepared)
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/jit/api/module.h>

#include <cstdint>
#include <functional>
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

struct AdaRoundOptions {
  int64_t iters = 1000;     // Adam steps per layer
  int64_t max_rows = 4096;  // input rows (output positions) sampled per layer
  double reg = 0.01;        // weight of the rounding regulariser
  double lr = 1e-2;         // Adam's step size
  double warmup = 0.2;      // fraction of iters without the regulariser
  double beta_start = 20.0, beta_end = 2.0;
  int64_t seed = 0;  // row sampling
};

// AdaRound (Nagel et al. 2020): for every conv/linear whose weights convert will quantize, learns
// per weight whether to round up or down so that the layer's output on `batches` (its float
// input) changes least, and writes back weights on their quantization grid, so that convert
// (round-to-nearest, same qparams) produces exactly the learned integers. `model`: a prepared
// module (its qconfig's weight options are used; qconfig must be "") or a float model,
// canonicalized and rounded for `qconfig` ("" = "x86"; prepare the result with the same one).
// Returns a copy; its string attribute `_tqx_adaround` lists per layer the output MSE of
// round-to-nearest and of AdaRound. progress(done, total) is called after each layer.
torch::jit::Module adaround(const torch::jit::Module& model, const std::vector<std::vector<c10::IValue>>& batches,
                            const std::string& qconfig = "", const AdaRoundOptions& options = {},
                            const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace torchquantx
