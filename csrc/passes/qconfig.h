// QConfig: how activations and weights are quantized, with PyTorch-compatible presets.
#pragma once

#include <c10/core/ScalarType.h>
#include <torch/csrc/jit/ir/ir.h>

#include <string>
#include <vector>

namespace tqx::passes {

// How conv/linear weights are quantized. Integer ranges follow torch.ao's weight observers:
// bits=8 -> [-128, 127], bits=4 -> [-8, 7] (stored and run as qint8), bits=16 -> [-32768, 32767]
// (no int16 kernels: convert runs those layers in float on the int16-rounded weights).
// Symmetric: zero point 0, scale = max|w| / ((qmax - qmin) / 2); affine: min/max mapped to the
// range (no int8 kernel here takes affine weights, so convert runs those layers in float too).
struct WeightSpec {
  int64_t bits = 8;
  bool per_channel = true;
  bool symmetric = true;
  int64_t qmin() const { return -(int64_t{1} << (bits - 1)); }
  int64_t qmax() const { return (int64_t{1} << (bits - 1)) - 1; }
  // True when convert can lower the layer onto an int8 kernel (symmetric, 4 or 8 bits).
  bool runs_int8() const { return symmetric && bits <= 8; }
  // "w4 per-channel symmetric"
  std::string describe() const;
};

struct QConfig {
  std::string preset = "x86";
  // Activations: per-tensor affine.
  c10::ScalarType activation_dtype = c10::kQUInt8;
  bool activation_reduce_range = true;
  std::string activation_observer = "histogram";  // histogram | minmax | moving_average_minmax
  // How histogram observers set their range (kernels/range_search.h): minmax | percentile |
  // entropy | mse | auto; the percentile is used by "percentile" and "auto".
  std::string activation_method = "minmax";
  double activation_percentile = 99.99;
  // Weights: per output channel or per tensor, symmetric or affine, 4, 8 or 16 bits (WeightSpec).
  c10::ScalarType weight_dtype = c10::kQInt8;
  bool weight_per_channel = true;
  bool weight_symmetric = true;
  int64_t weight_bits = 8;
  // PyTorch quantized engine that packs weights for target="native".
  std::string engine = "onednn";
  // Module-name prefixes ("layer4", "fc") and module class names ("LayerNorm", "SEBlock") whose
  // ops stay in float.
  std::vector<std::string> skip_modules;
  std::vector<std::string> skip_types;

  // "x86" / "fbgemm" (reduce_range activations, per-channel weights; packed with onednn here,
  // this torch has no fbgemm), "onednn" (full-range activations, per-channel weights),
  // "qnnpack" (full-range activations, per-tensor weights). The same meaning as
  // torch.ao.quantization.get_default_qconfig(name). Throws naming the value otherwise.
  // Overrides follow as ";key=value": activation_observer, activation_method,
  // activation_percentile, activation_reduce_range, weight_per_channel, weight_symmetric,
  // weight_bits (4, 8 or 16).
  static QConfig preset_named(const std::string& name);

  WeightSpec weight_spec() const { return {weight_bits, weight_per_channel, weight_symmetric}; }

  // True when `layer` ("layer4.1.conv2") is one of skip_modules or inside one, or when one of
  // the module classes on the way (`types`) is in skip_types.
  bool skips(const std::string& layer, const std::vector<std::string>& types = {}) const;
  // The same for a graph node, from its inlined call stack.
  bool skips(const torch::jit::Node* node) const;

  // A one-line text form stored on prepared modules, and its inverse.
  std::string serialize() const;
  static QConfig deserialize(const std::string& text);
};

}  // namespace tqx::passes
