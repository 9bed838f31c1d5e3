// The one table of quantizable ops: how each runs quantized and what it lowers to per target.
// Nothing else in the passes special-cases op names (see docs/architecture.md).
#pragma once

#include <torch/csrc/jit/ir/ir.h>

#include <string>
#include <vector>

namespace tqx::passes {

enum class QuantKind {
  kInt8,          // int8 kernel with its own output qparams (observed)
  kSameQParams,   // runs on int8 values, output keeps the input's qparams (pooling, reshapes, relu)
  kFixedQParams,  // output qparams fixed by the function's range (sigmoid, tanh, hardsigmoid)
  kFloat,         // runs in float; dequantize / quantize are inserted around it as needed
};

// How the native target (PyTorch's quantized:: operators) runs an op.
enum class NativeLowering {
  kConv,        // quantized::conv{1,2}d[_relu] over prepacked weights
  kLinear,      // quantized::linear[_relu] over prepacked weights
  kBinary,      // quantized::add / mul [_relu]
  kCat,         // quantized::cat
  kQParamsArg,  // quantized::<op>(x, output_scale, output_zero_point), e.g. hardswish
  kSameOp,      // the same aten op applied to a quantized tensor
};

struct OpRule {
  const char* op;                // qualified name, e.g. "aten::conv2d"
  QuantKind kind;
  std::vector<int> activations;  // tensor inputs that run quantized
  int weight;                    // index of a constant float weight (conv, linear), or -1
  bool fuses_relu;               // a following relu folds into the kernel (single use)
  NativeLowering native;
  const char* native_op;         // the quantized:: op (kConv/kLinear/kBinary/kCat/kQParamsArg); for kSameOp,
                                 // when set, the op that replaces it on int8 tensors (view -> reshape: int8
                                 // producers may return channels-last tensors, which view cannot flatten)
  const char* native_relu_op;    // its fused-relu variant, or nullptr
  double fixed_scale;            // kFixedQParams (quint8 output)
  int64_t fixed_zero_point;
  const char* quantx_op;         // torchquantx's own kernel for target "quantx" (a `relu` flag
                                 // fuses the relu), or nullptr: the native lowering is used
};

// The rule for a node, or nullptr when the op is not in the table (it runs in float). Rules
// apply only when their activation inputs are tensors and their weight is a constant tensor.
const OpRule* find_rule(const torch::jit::Node* node);

// True for the relu forms a fusing kernel absorbs.
bool is_fusable_relu(const torch::jit::Node* node);

// Every rule, for documentation and summary output.
const std::vector<OpRule>& all_rules();

}  // namespace tqx::passes
