// Data-free activation ranges from BatchNorm statistics: a conv whose BatchNorm was folded has
// pre-activations ~ N(beta, gamma^2) per channel, so its output range is taken as
// [beta - n|gamma|, beta + n|gamma|], clipped by a following ReLU / ReLU6 / hardtanh / clamp.
// Values without such statistics get ranges by interval arithmetic from their inputs' ranges:
// add / sub of two ranged values, and conv / linear through their weights (conservative);
// ops that keep their input's qparams pass ranges through. The model input's range is given.
//
// Before: a prepared module (observers inserted, `_tqx_preactivation` kept by prepare).
// After:  the same module; ranges() reports, per observer attribute, the range to feed it.
#pragma once

#include <torch/csrc/jit/api/module.h>

#include <string>
#include <vector>

namespace tqx::passes {

struct ObserverRange {
  std::string observer;  // attribute name (_tqx_obs_N)
  double lo;
  double hi;
  std::string source;  // "batchnorm", "interval" or "input"
};

// The ranges of every observer whose value the rules above reach, in graph order. n: how many
// standard deviations around beta; input_lo/hi: the range of the model's tensor inputs.
std::vector<ObserverRange> batchnorm_ranges(const torch::jit::Module& prepared, double n, double input_lo,
                                            double input_hi);

}  // namespace tqx::passes
