// The quantization pipeline for C++ applications: prepare -> (run calibration data) -> convert.
#pragma once

#include <torch/csrc/jit/api/module.h>

#include <string>
#include <vector>

namespace torchquantx {

// A copy of `model` (eval mode) with BatchNorm folded and observers inserted wherever an
// activation will run in int8. qconfig: "x86" (default), "fbgemm", "onednn" or "qnnpack".
// Ops of modules whose path starts with an entry of `skip`, or inside a module whose class name
// is in `skip_types`, stay in float.
torch::jit::Module prepare(const torch::jit::Module& model, const std::string& qconfig = "x86",
                           const std::vector<std::string>& skip = {},
                           const std::vector<std::string>& skip_types = {});

// A trainable quantization-aware-training copy of `model` (training mode): fake-quantizers where
// prepare puts observers, conv/linear weights fake-quantized, BatchNorm folding simulated. Train
// it, call eval(), and convert it like a calibrated prepared module.
torch::jit::Module prepare_qat(const torch::jit::Module& model, const std::string& qconfig = "x86",
                               const std::vector<std::string>& skip = {},
                               const std::vector<std::string>& skip_types = {});

// An int8 copy of a calibrated prepared module. target "quantx" (default) runs torchquantx's own
// int8 kernels (loading the saved file needs the library); "native" runs PyTorch's quantized::
// operators (the file loads in stock PyTorch); "reference" keeps float ops between
// quantize/dequantize pairs (for debugging numerics).
torch::jit::Module convert(const torch::jit::Module& prepared, const std::string& target = "quantx");

// Dynamic quantization: linear layers get int8 weights packed once and quantize their inputs
// per batch at run time (quantized::linear_dynamic). No calibration needed.
torch::jit::Module quantize_dynamic(const torch::jit::Module& model, bool weight_per_channel = true,
                                    bool reduce_range = false, const std::string& engine = "onednn");

// Weight-only quantization (bits 8 or 16): weights saved as integers, dequantized once at load.
torch::jit::Module quantize_weights(const torch::jit::Module& model, int64_t bits = 8);

// One line per op of a converted module: what it became and why; for a prepared module, its
// observers and what they watch.
std::string summary(const torch::jit::Module& module);

}  // namespace torchquantx
