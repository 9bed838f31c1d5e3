// Cross-layer equalization with high-bias absorption, the BatchNorm statistics they read, and the
// quantx::equalize operator.
#include "passes/equalize.h"

#include <ATen/core/Dict.h>
#include <ATen/ops/stack.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <string>

#include "api/recovery.h"
#include "passes/canonicalize.h"
#include "passes/graph_utils.h"
#include "passes/op_registry.h"

namespace tqx::passes {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

constexpr const char* kPreActivationAttr = "_tqx_preactivation";
constexpr const char* kEqualizedAttr = "_tqx_equalized";

const OpRule* weighted_rule(const Node* n) {
  const OpRule* rule = find_rule(n);
  if (rule == nullptr || rule->weight < 0) return nullptr;
  if (rule->native != NativeLowering::kConv && rule->native != NativeLowering::kLinear) return nullptr;
  const auto w = torch::jit::toIValue(n->input(rule->weight));
  if (!w || !w->isTensor() || !w->toTensor().is_floating_point()) return nullptr;
  const auto b = torch::jit::toIValue(n->input(rule->weight + 1));
  if (!b || !(b->isNone() || b->isTensor())) return nullptr;
  return rule;
}

std::optional<double> constant_double(const Value* v) {
  const auto iv = torch::jit::toIValue(v);
  if (!iv || !(iv->isDouble() || iv->isInt())) return std::nullopt;
  return iv->isDouble() ? iv->toDouble() : static_cast<double>(iv->toInt());
}

// The conv or linear layer under rewrite: weights in float64 while scales accumulate, written
// back once in the original dtype.
struct Layer {
  Node* node = nullptr;
  int weight_input = 1;
  bool linear = false;
  int64_t groups = 1;
  bool zero_padding = true;  // a conv that pads nothing (shifted inputs stay exact)
  c10::ScalarType dtype = c10::kFloat;
  at::Tensor weight;  // [out, in / groups, k...]
  at::Tensor bias;    // [out]; undefined while the node's bias is None
  bool changed = false;

  int64_t channels() const { return weight.size(0); }
};

Layer make_layer(Node* n, const OpRule& rule) {
  Layer l;
  l.node = n;
  l.weight_input = rule.weight;
  l.linear = rule.native == NativeLowering::kLinear;
  const at::Tensor w = torch::jit::toIValue(n->input(rule.weight))->toTensor();
  l.dtype = w.scalar_type();
  l.weight = w.to(c10::kDouble);
  const auto b = torch::jit::toIValue(n->input(rule.weight + 1));
  if (b->isTensor()) l.bias = b->toTensor().to(c10::kDouble);
  if (!l.linear) {
    // conv(input, weight, bias, stride, padding, dilation, groups)
    const auto groups = torch::jit::toIValue(n->input(rule.weight + 5));
    l.groups = groups && groups->isInt() ? groups->toInt() : 0;
    const auto padding = torch::jit::toIValue(n->input(rule.weight + 3));
    if (padding && padding->isIntList()) {
      for (int64_t p : padding->toIntVector()) l.zero_padding = l.zero_padding && p == 0;
    } else {
      l.zero_padding = padding && padding->isString() && padding->toStringRef() == "valid";
    }
  }
  return l;
}

bool is_relu6(const Node* n) {
  if (n->kind() == c10::aten::relu6) return true;
  if (n->kind() != c10::aten::hardtanh) return false;
  const auto lo = constant_double(n->input(1)), hi = constant_double(n->input(2));
  return lo && hi && *lo == 0.0 && *hi == 6.0;
}

// Pooling that commutes with a positive per-channel scale; `shift` says whether it also
// commutes with a per-channel shift (average pooling over zero padding does not).
bool is_channel_pool(const Node* n, bool* shift) {
  const auto k = n->kind();
  if (k == c10::aten::max_pool1d || k == c10::aten::max_pool2d || k == c10::aten::adaptive_avg_pool1d ||
      k == c10::aten::adaptive_avg_pool2d) {
    *shift = true;
    return true;
  }
  if (k == c10::aten::avg_pool1d || k == c10::aten::avg_pool2d) {
    // avg_pool(self, kernel_size, stride, padding, ...)
    const auto padding = torch::jit::toIValue(n->input(3));
    bool zero = padding && padding->isIntList();
    if (zero)
      for (int64_t p : padding->toIntVector()) zero = zero && p == 0;
    *shift = zero;
    return true;
  }
  return false;
}

// mean over every spatial dim of a (N, C, spatial...) tensor; sets *keepdim.
bool is_spatial_mean(const Node* n, int64_t spatial, bool* keepdim) {
  if (n->kind() != c10::aten::mean || n->inputs().size() != 4) return false;
  const auto dims = torch::jit::toIValue(n->input(1)), keep = torch::jit::toIValue(n->input(2));
  const auto dtype = torch::jit::toIValue(n->input(3));
  if (!dims || !dims->isIntList() || !keep || !keep->isBool() || !dtype || !dtype->isNone()) return false;
  std::vector<int64_t> d = dims->toIntVector();
  for (int64_t& x : d) x = x < 0 ? x + 2 + spatial : x;
  std::sort(d.begin(), d.end());
  if (static_cast<int64_t>(d.size()) != spatial) return false;
  for (int64_t i = 0; i < spatial; ++i) {
    if (d[i] != 2 + i) return false;
  }
  *keepdim = keep->toBool();
  return true;
}

// The one node reading v's data (shape queries do not count), or nullptr.
Node* only_data_user(Value* v) {
  Node* user = nullptr;
  for (const auto& use : v->uses()) {
    if (use.user->kind() == c10::aten::size) continue;
    if (user != nullptr) return nullptr;
    user = use.user;
  }
  return user;
}

struct Pair {
  size_t first = 0, second = 0;  // indices into the layer list
  int64_t taps = 1;              // columns of a linear second layer per channel of the first
  std::vector<Node*> relu6s;
  bool relu = false;         // a relu between them (after relu6 -> relu, if any)
  bool shift_passes = true;  // a per-channel shift of layer 1's output reaches layer 2 unchanged
};

// Follows layer 1's output through single-use, channel-preserving ops to the next layer.
std::optional<Pair> find_pair(const std::vector<Layer>& layers, size_t first,
                              const std::unordered_map<const Node*, size_t>& index) {
  const Layer& a = layers[first];
  Pair p;
  p.first = first;
  bool flat = a.linear;  // channels on the last dim (linear output, or a flattened conv output)
  const int64_t spatial = a.weight.dim() - 2;
  Value* v = a.node->output();
  while (true) {
    Node* u = only_data_user(v);
    if (u == nullptr) return std::nullopt;
    const auto it = index.find(u);
    if (it != index.end()) {
      const Layer& b = layers[it->second];
      if (u->input(0) != v) return std::nullopt;
      const int64_t c = a.channels();
      if (b.linear) {
        if (!flat || b.weight.size(1) % c != 0) return std::nullopt;
        p.taps = b.weight.size(1) / c;
        if (a.linear && p.taps != 1) return std::nullopt;
      } else {
        if (flat || b.groups < 1 || b.weight.size(1) * b.groups != c || b.weight.dim() != a.weight.dim()) {
          return std::nullopt;
        }
      }
      p.second = it->second;
      return p;
    }
    bool shift = true, keepdim = false;
    if (u->kind() == c10::aten::relu) {
      p.relu = true;
    } else if (is_relu6(u)) {
      p.relu6s.push_back(u);
    } else if (!flat && is_channel_pool(u, &shift)) {
      p.shift_passes = p.shift_passes && shift;
    } else if (!flat && is_spatial_mean(u, spatial, &keepdim)) {
      flat = !keepdim;
    } else if (!flat && is_batch_flatten(u, v)) {
      flat = true;
    } else {
      return std::nullopt;
    }
    if (u->input(0) != v) return std::nullopt;
    v = u->output();
  }
}

// Per-output-channel max |w| of a layer: [C].
at::Tensor output_ranges(const Layer& l) { return l.weight.abs().flatten(1).amax({1}); }

// Per-input-channel max |w| of layer b, for the c channels of the layer before it: [c].
at::Tensor input_ranges(const Layer& b, int64_t c, int64_t taps) {
  const at::Tensor w = b.weight.abs();
  if (b.linear) return w.reshape({w.size(0), c, taps}).amax({0, 2});
  const int64_t cin = w.size(1), out = w.size(0);
  return w.flatten(2).amax({2}).reshape({b.groups, out / b.groups, cin}).amax({1}).reshape({c});
}

// Multiplies input channel i of layer b by s[i].
void scale_inputs(Layer& b, const at::Tensor& s, int64_t taps) {
  const int64_t c = s.size(0), out = b.weight.size(0);
  if (b.linear) {
    b.weight = b.weight.reshape({out, c, taps}).mul(s.reshape({1, c, 1})).reshape(b.weight.sizes());
    return;
  }
  const int64_t cin = b.weight.size(1);
  b.weight = b.weight.reshape({b.groups, out / b.groups, cin, -1})
                 .mul(s.reshape({b.groups, 1, cin, 1}))
                 .reshape(b.weight.sizes());
}

// W c for a per-input-channel vector c (length = channels of the layer before): [out].
at::Tensor weight_times(const Layer& b, const at::Tensor& c, int64_t taps) {
  const int64_t n = c.size(0), out = b.weight.size(0);
  if (b.linear) return b.weight.reshape({out, n, taps}).sum({2}).mul(c.reshape({1, n})).sum({1});
  const int64_t cin = b.weight.size(1);
  return b.weight.flatten(2)
      .sum({2})
      .reshape({b.groups, out / b.groups, cin})
      .mul(c.reshape({b.groups, 1, cin}))
      .sum({2})
      .reshape({out});
}

void replace_input(Graph& graph, Node* n, size_t i, const at::Tensor& t) {
  torch::jit::WithInsertPoint guard(n);
  n->replaceInput(i, graph.insertConstant(t));
}

// Records the statistics of each BatchNorm that FoldFrozenConvBatchnorm will fold into a conv.
void record_batchnorm(Graph& graph, PreActivationMap* seen) {
  for_each_node(graph.block(), [&](Node* bn) {
    if (bn->kind() != c10::aten::batch_norm) return;
    Node* conv = bn->input(0)->node();
    const OpRule* rule = weighted_rule(conv);
    if (rule == nullptr || rule->native != NativeLowering::kConv || conv->output()->uses().size() != 1) return;
    // batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
    const auto gamma = torch::jit::toIValue(bn->input(1)), beta = torch::jit::toIValue(bn->input(2));
    const auto mean = torch::jit::toIValue(bn->input(3)), training = torch::jit::toIValue(bn->input(5));
    if (!gamma || !beta || !mean || !mean->isTensor() || !training || training->toBool()) return;
    // A constant add/mul after the BatchNorm is folded too and would move the statistics.
    // (A residual add of another activation is not folded and keeps them.)
    for (const auto& use : bn->output()->uses()) {
      const auto k = use.user->kind();
      if (k != c10::aten::add && k != c10::aten::sub && k != c10::aten::mul && k != c10::aten::div) continue;
      const Value* other = use.user->input(use.offset == 0 ? 1 : 0);
      if (torch::jit::toIValue(other).has_value()) return;
    }
    const at::Tensor m = mean->toTensor().to(c10::kDouble);
    PreActivation pa;
    pa.mean = beta->isTensor() ? beta->toTensor().to(c10::kDouble).clone() : m.new_zeros(m.sizes());
    pa.std = gamma->isTensor() ? gamma->toTensor().to(c10::kDouble).abs() : m.new_ones(m.sizes());
    (*seen)[conv] = pa;
  });
}

std::string describe(const EqualizeReport& r) {
  std::ostringstream os;
  os << "pairs=" << r.pairs << " iterations=" << r.iterations << " absorbed=" << r.absorbed
     << " relu6_replaced=" << r.relu6_replaced << " relu6_skipped=" << r.relu6_skipped;
  return os.str();
}

}  // namespace

bool is_batch_flatten(const Node* n, const Value* in) {
  if (n->kind() == c10::aten::flatten) {
    const auto start = torch::jit::toIValue(n->input(1)), end = torch::jit::toIValue(n->input(2));
    return start && end && start->isInt() && end->isInt() && start->toInt() == 1 && end->toInt() == -1;
  }
  if (n->kind() != c10::aten::view && n->kind() != c10::aten::reshape) return false;
  const Node* shape = n->input(1)->node();
  if (shape->kind() != c10::prim::ListConstruct || shape->inputs().size() != 2) return false;
  const auto rest = torch::jit::toIValue(shape->input(1));
  const Node* batch = shape->input(0)->node();
  const auto dim = batch->kind() == c10::aten::size && batch->inputs().size() == 2
                       ? torch::jit::toIValue(batch->input(1))
                       : c10::nullopt;
  return rest && rest->isInt() && rest->toInt() == -1 && batch->input(0) == in && dim && dim->isInt() &&
         dim->toInt() == 0;
}

std::vector<Node*> weighted_layers(Graph& graph) {
  std::vector<Node*> out;
  for_each_node(graph.block(), [&](Node* n) {
    if (weighted_rule(n) != nullptr) out.push_back(n);
  });
  return out;
}

torch::jit::Module canonicalize_with_preactivation(const torch::jit::Module& module, PreActivationMap* stats) {
  PreActivationMap seen;
  torch::jit::Module out = canonicalize(module, [&](Graph& g) { record_batchnorm(g, &seen); });
  // Freezing drops `training`; without it the result could not be prepared (is_training() is true).
  if (!out.hasattr("training")) out.register_attribute("training", c10::BoolType::get(), false);
  const auto layers = weighted_layers(*out.get_method("forward").graph());
  if (module.hasattr(kPreActivationAttr)) {
    // Made by equalize: BatchNorm is gone, its rescaled statistics were kept by layer index.
    for (const auto& entry : module.attr(kPreActivationAttr).toGenericDict()) {
      const int64_t i = entry.key().toInt();
      const at::Tensor t = entry.value().toTensor();
      if (i < 0 || i >= static_cast<int64_t>(layers.size())) continue;
      const auto w = torch::jit::toIValue(layers[i]->input(1))->toTensor();
      if (t.dim() != 2 || t.size(0) != 2 || t.size(1) != w.size(0)) continue;
      (*stats)[layers[i]] = PreActivation{t[0].clone(), t[1].clone()};
    }
    return out;
  }
  for (Node* n : layers) {
    const auto it = seen.find(n);
    if (it == seen.end()) continue;
    bool folded = true;
    for (const auto& use : n->output()->uses()) folded = folded && use.user->kind() != c10::aten::batch_norm;
    const auto w = torch::jit::toIValue(n->input(1))->toTensor();
    if (folded && it->second.mean.numel() == w.size(0)) (*stats)[n] = it->second;
  }
  return out;
}

void store_preactivation(torch::jit::Module& module, const PreActivationMap& stats) {
  c10::Dict<int64_t, at::Tensor> dict;
  const auto layers = weighted_layers(*module.get_method("forward").graph());
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto it = stats.find(layers[i]);
    if (it != stats.end()) dict.insert(static_cast<int64_t>(i), at::stack({it->second.mean, it->second.std}));
  }
  if (dict.empty()) return;
  const c10::IValue value(dict);
  if (module.hasattr(kPreActivationAttr)) {
    module.setattr(kPreActivationAttr, value);
  } else {
    module.register_attribute(kPreActivationAttr, value.type(), value);
  }
}

EqualizeReport equalize_graph(Graph& graph, const EqualizeOptions& options, PreActivationMap* stats) {
  EqualizeReport report;
  std::vector<Layer> layers;
  std::unordered_map<const Node*, size_t> index;
  for (Node* n : weighted_layers(graph)) {
    layers.push_back(make_layer(n, *weighted_rule(n)));
    index[n] = layers.size() - 1;
  }
  std::vector<Pair> pairs;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].groups < 1) continue;
    auto p = find_pair(layers, i, index);
    if (!p || layers[p->second].groups < 1) continue;
    if (!p->relu6s.empty() && !options.relu6_to_relu) {
      ++report.relu6_skipped;
      continue;
    }
    p->relu = p->relu || !p->relu6s.empty();
    pairs.push_back(*p);
  }
  report.pairs = static_cast<int64_t>(pairs.size());

  auto stats_of = [&](const Layer& l) -> PreActivation* {
    if (stats == nullptr) return nullptr;
    const auto it = stats->find(l.node);
    return it == stats->end() ? nullptr : &it->second;
  };
  for (int64_t it = 0; it < options.max_iterations && !pairs.empty(); ++it) {
    ++report.iterations;
    double deviation = 0;
    for (const Pair& p : pairs) {
      Layer& a = layers[p.first];
      Layer& b = layers[p.second];
      const int64_t c = a.channels();
      const at::Tensor r1 = output_ranges(a), r2 = input_ranges(b, c, p.taps);
      // Dead channels (a zero range on either side) keep s = 1.
      const at::Tensor live = r1.gt(0).logical_and(r2.gt(0));
      const at::Tensor s = r1.mul(r2).sqrt().div(r2).masked_fill(live.logical_not(), 1.0);
      std::vector<int64_t> shape(a.weight.dim(), 1);
      shape[0] = c;
      a.weight = a.weight.div(s.reshape(shape));
      if (a.bias.defined()) a.bias = a.bias.div(s);
      scale_inputs(b, s, p.taps);
      a.changed = b.changed = true;
      if (PreActivation* pa = stats_of(a)) {
        pa->mean = pa->mean.div(s);
        pa->std = pa->std.div(s);
      }
      deviation = std::max(deviation, s.sub(1.0).abs().max().item<double>());
    }
    if (deviation < options.tolerance) break;
  }

  for (const Pair& p : pairs) {
    Layer& a = layers[p.first];
    Layer& b = layers[p.second];
    PreActivation* pa = stats_of(a);
    if (!options.absorb_high_bias || pa == nullptr || !p.relu || !p.shift_passes || !b.zero_padding) continue;
    // relu(y - c) = relu(y) - c for y >= c; beta - 3|gamma| bounds all but ~0.13% of y.
    const at::Tensor c = pa->mean.sub(pa->std.mul(3.0)).clamp_min(0.0);
    if (c.max().item<double>() <= 0) continue;
    a.bias = a.bias.defined() ? a.bias.sub(c) : c.neg();
    const at::Tensor shift = weight_times(b, c, p.taps);
    b.bias = b.bias.defined() ? b.bias.add(shift) : shift;
    pa->mean = pa->mean.sub(c);
    a.changed = b.changed = true;
    ++report.absorbed;
  }

  for (const Layer& l : layers) {
    if (!l.changed) continue;
    replace_input(graph, l.node, l.weight_input, l.weight.to(l.dtype));
    if (l.bias.defined()) replace_input(graph, l.node, l.weight_input + 1, l.bias.to(l.dtype));
  }
  if (options.relu6_to_relu) {
    for (const Pair& p : pairs) {
      for (Node* r6 : p.relu6s) {
        torch::jit::WithInsertPoint guard(r6);
        Node* relu = graph.insertNode(graph.create(c10::aten::relu, {r6->input(0)}));
        relu->output()->setType(r6->output()->type());
        r6->output()->replaceAllUsesWith(relu->output());
        r6->destroy();
        ++report.relu6_replaced;
      }
    }
  }
  return report;
}

}  // namespace tqx::passes

namespace torchquantx {

torch::jit::Module equalize(const torch::jit::Module& model, bool relu6_to_relu, bool absorb_high_bias) {
  TORCH_CHECK(!model.hasattr(tqx::passes::kQConfigAttr),
              "torchquantx.equalize: the model is already prepared; "
              "equalize the float model, then prepare the result");
  TORCH_CHECK(!model.is_training(), "torchquantx.equalize: the model should be in eval mode; call model.eval() first");
  tqx::passes::PreActivationMap stats;
  torch::jit::Module out = tqx::passes::canonicalize_with_preactivation(model, &stats);
  auto graph = out.get_method("forward").graph();
  tqx::passes::EqualizeOptions options;
  options.relu6_to_relu = relu6_to_relu;
  options.absorb_high_bias = absorb_high_bias;
  const tqx::passes::EqualizeReport report = tqx::passes::equalize_graph(*graph, options, &stats);
  torch::jit::EliminateDeadCode(graph);
  tqx::passes::store_preactivation(out, stats);
  const std::string text = tqx::passes::describe(report);
  if (out.hasattr(tqx::passes::kEqualizedAttr)) {
    out.setattr(tqx::passes::kEqualizedAttr, text);
  } else {
    out.register_attribute(tqx::passes::kEqualizedAttr, c10::StringType::get(), text);
  }
  return out;
}

}  // namespace torchquantx

namespace tqx::passes {
namespace {

c10::IValue equalize_op(c10::IValue module, bool relu6_to_relu, bool absorb_high_bias) {
  TORCH_CHECK(module.isObject() && module.toObject()->type()->is_module(),
              "quantx::equalize: module should be a "
              "TorchScript module (pass scripted_model._c, or use torchquantx.equalize, which accepts nn.Module), "
              "got ",
              module.tagKind());
  return torchquantx::equalize(torch::jit::Module(module.toObject()), relu6_to_relu, absorb_high_bias)._ivalue();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("equalize(Any module, bool relu6_to_relu=False, bool absorb_high_bias=True) -> Any", equalize_op);
}

}  // namespace tqx::passes
