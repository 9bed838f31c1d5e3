// What every quantx observer shares: its quantization settings, input checks and qparams output.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace tqx::observers {

// Settings an observer turns its statistics into qparams with.
struct ObserverConfig {
  int64_t quant_min = 0;
  int64_t quant_max = 255;
  bool symmetric = false;
  double eps = 1.1920928955078125e-07;
  // Observers that prepare inserts pass non-float tensors through (counting them) instead of
  // failing: graph types cannot tell an integer tensor from a float one before calibration.
  bool skip_non_float = false;

  // Checks the values, naming the observer class in errors.
  void validate(const char* observer) const;
  std::vector<double> to_vector() const;
  static ObserverConfig from_vector(const char* observer, const std::vector<double>& v, size_t offset);
  static constexpr size_t kSize = 5;
};

// Checks an observer's input (float32, CPU, dense) and returns it contiguous. With
// cfg.skip_non_float, a tensor of another dtype returns an undefined tensor instead of failing.
at::Tensor observer_input(const char* observer, const at::Tensor& x, const ObserverConfig& cfg);

// Finite min/max of x (NaN and +-Inf skipped); returns how many values were not finite.
int64_t finite_minmax(const float* x, int64_t n, float* min, float* max);

// (scale float32[n], zero_point int64[n]) for per-channel bounds (n = 1 for per tensor).
std::tuple<at::Tensor, at::Tensor> qparams_from_bounds(const ObserverConfig& cfg, const std::vector<float>& min,
                                                      const std::vector<float>& max);

at::Tensor float_vector_tensor(const std::vector<float>& v);

// Version of the pickled state of the observer classes; a class whose state grew keeps its own
// newer version (HistogramObserver: 2) and reads every version from 1 up to it.
constexpr int64_t kObserverStateVersion = 1;
void check_state_version(const char* observer, int64_t version, int64_t newest = kObserverStateVersion);

}  // namespace tqx::observers
