// The op registry table. Adding support for an op is one row here (plus its kernel).
#include "passes/op_registry.h"

#include <unordered_map>

namespace tqx::passes {
namespace {

using K = QuantKind;
using L = NativeLowering;

// clang-format off
const std::vector<OpRule>& table() {
  static const std::vector<OpRule> rules = {
    // op                          kind               act     weight relu   native          native op                relu variant              fixed qparams  quantx target
    {"aten::conv1d",               K::kInt8,          {0},    1,     true,  L::kConv,       "quantized::conv1d",     "quantized::conv1d_relu",   0, 0, nullptr},
    {"aten::conv2d",               K::kInt8,          {0},    1,     true,  L::kConv,       "quantized::conv2d",     "quantized::conv2d_relu",   0, 0, "quantx::conv2d"},
    {"aten::linear",               K::kInt8,          {0},    1,     true,  L::kLinear,     "quantized::linear",     "quantized::linear_relu",   0, 0, "quantx::linear"},
    {"aten::add",                  K::kInt8,          {0, 1}, -1,    true,  L::kBinary,     "quantized::add",        "quantized::add_relu",      0, 0, "quantx::add"},
    {"aten::mul",                  K::kInt8,          {0, 1}, -1,    true,  L::kBinary,     "quantized::mul",        "quantized::mul_relu",      0, 0, "quantx::mul"},
    {"aten::cat",                  K::kInt8,          {0},    -1,    false, L::kCat,        "quantized::cat",        nullptr,                    0, 0, "quantx::cat"},
    {"aten::hardswish",            K::kInt8,          {0},    -1,    false, L::kQParamsArg, "quantized::hardswish",  nullptr,                    0, 0, "quantx::hardswish"},
    {"aten::relu",                 K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::relu6",                K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::hardtanh",             K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::clamp",                K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::max_pool1d",           K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::max_pool2d",           K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, "quantx::max_pool2d"},
    {"aten::avg_pool2d",           K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, "quantx::avg_pool2d"},
    {"aten::adaptive_avg_pool2d",  K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, "quantx::adaptive_avg_pool2d"},
    {"aten::mean",                 K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, "quantx::mean"},
    {"aten::upsample_nearest2d",   K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, "quantx::upsample_nearest2d"},
    {"aten::upsample_bilinear2d",  K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::flatten",              K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::reshape",              K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::view",                 K::kSameQParams,   {0},    -1,    false, L::kSameOp,     "aten::reshape",         nullptr,                    0, 0, nullptr},
    {"aten::permute",              K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::transpose",            K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::contiguous",           K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::squeeze",              K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::unsqueeze",            K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::slice",                K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::select",               K::kSameQParams,   {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    0, 0, nullptr},
    {"aten::sigmoid",              K::kFixedQParams,  {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    1.0 / 256.0, 0, "quantx::sigmoid"},
    {"aten::hardsigmoid",          K::kFixedQParams,  {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    1.0 / 256.0, 0, "quantx::hardsigmoid"},
    {"aten::tanh",                 K::kFixedQParams,  {0},    -1,    false, L::kSameOp,     nullptr,                 nullptr,                    2.0 / 256.0, 128, "quantx::tanh"},
  };
  return rules;
}
// clang-format on

const std::unordered_map<c10::Symbol, const OpRule*>& by_symbol() {
  static const auto map = [] {
    std::unordered_map<c10::Symbol, const OpRule*> m;
    for (const OpRule& r : table()) m[c10::Symbol::fromQualString(r.op)] = &r;
    return m;
  }();
  return map;
}

bool is_tensor(const torch::jit::Value* v) { return v->type()->cast<c10::TensorType>() != nullptr; }

bool is_tensor_list(const torch::jit::Value* v) {
  auto list = v->type()->cast<c10::ListType>();
  return list && list->getElementType()->cast<c10::TensorType>();
}

}  // namespace

const std::vector<OpRule>& all_rules() { return table(); }

const OpRule* find_rule(const torch::jit::Node* node) {
  const auto it = by_symbol().find(node->kind());
  if (it == by_symbol().end()) return nullptr;
  const OpRule* rule = it->second;
  if (node->outputs().size() != 1 || !is_tensor(node->output())) return nullptr;
  for (int i : rule->activations) {
    if (i >= static_cast<int>(node->inputs().size())) return nullptr;
    const torch::jit::Value* v = node->input(i);
    // A cat's list must be built in place and used only by the cat (a list that is appended to
    // elsewhere, e.g. in a loop, has elements the ListConstruct does not show).
    const bool ok = rule->native == NativeLowering::kCat
                        ? is_tensor_list(v) && v->node()->kind() == c10::prim::ListConstruct && v->uses().size() == 1
                        : is_tensor(v);
    if (!ok) return nullptr;  // e.g. add(Tensor, Scalar) stays float
  }
  if (rule->weight >= 0) {
    const torch::jit::Value* w = node->input(rule->weight);
    if (w->node()->kind() != c10::prim::Constant || !w->type()->cast<c10::TensorType>()) return nullptr;
  }
  // add(a, b, alpha) lowers to quantized::add only for alpha == 1.
  if (rule->native == NativeLowering::kBinary && node->inputs().size() > 2) {
    const auto alpha = torch::jit::toIValue(node->input(2));
    if (!alpha || !(alpha->isInt() ? alpha->toInt() == 1 : alpha->isDouble() && alpha->toDouble() == 1.0)) {
      return nullptr;
    }
  }
  return rule;
}

bool is_fusable_relu(const torch::jit::Node* node) { return node->kind() == c10::aten::relu; }

}  // namespace tqx::passes
