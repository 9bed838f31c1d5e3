// Bias correction, empirical and analytic, and the quantx::bias_correction* operators.
#include "passes/bias_correction.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/jit/api/compilation_unit.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "api/recovery.h"
#include "passes/graph_utils.h"
#include "passes/op_registry.h"
#include "passes/weights.h"

namespace tqx::passes {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// True when v is an observer's output, possibly through same-qparams ops (relu6, pooling,
// flatten...): convert then runs the layer reading v in int8.
bool is_observed(const Value* v) {
  while (true) {
    const Node* p = v->node();
    if (is_observer_call(p)) return true;
    const OpRule* rule = find_rule(p);
    if (rule == nullptr || rule->kind != QuantKind::kSameQParams || rule->activations.empty()) return false;
    v = p->input(rule->activations[0]);
  }
}

bool is_linear(const Node* n) { return find_rule(n)->native == NativeLowering::kLinear; }

int64_t groups_of(const Node* n) {
  if (is_linear(n)) return 1;
  const auto g = torch::jit::toIValue(n->input(6));  // conv(input, weight, bias, stride, padding, dilation, groups)
  return g && g->isInt() ? g->toInt() : 0;
}

at::Tensor weight_of(const Node* n) { return torch::jit::toIValue(n->input(1))->toTensor(); }

// The [lo, hi] an activation clamps to, for relu, relu6, hardtanh and clamp with constant bounds.
std::optional<std::pair<double, double>> clamp_bounds(const Node* n) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  const auto k = n->kind();
  if (k == c10::aten::relu) return std::make_pair(0.0, inf);
  if (k == c10::aten::relu6) return std::make_pair(0.0, 6.0);
  if (k != c10::aten::hardtanh && k != c10::aten::clamp) return std::nullopt;
  const auto lo = torch::jit::toIValue(n->input(1)), hi = torch::jit::toIValue(n->input(2));
  if (!lo || !hi) return std::nullopt;
  auto bound = [](const c10::IValue& v, double none) -> std::optional<double> {
    if (v.isNone()) return none;
    if (v.isDouble()) return v.toDouble();
    if (v.isInt()) return static_cast<double>(v.toInt());
    return std::nullopt;
  };
  const auto a = bound(*lo, -inf), b = bound(*hi, inf);
  if (!a || !b) return std::nullopt;
  return std::make_pair(*a, *b);
}

// Average pooling and means over non-channel dims keep a channel's mean.
bool keeps_channel_mean(const Node* n) {
  const auto k = n->kind();
  if (k == c10::aten::avg_pool1d || k == c10::aten::avg_pool2d || k == c10::aten::adaptive_avg_pool1d ||
      k == c10::aten::adaptive_avg_pool2d) {
    return true;
  }
  if (k != c10::aten::mean || n->inputs().size() != 4) return false;
  const auto dims = torch::jit::toIValue(n->input(1));
  if (!dims || !dims->isIntList()) return false;
  for (int64_t d : dims->toIntVector()) {
    if (d < 2) return false;
  }
  return true;
}

// E[clamp(Y, lo, hi)] for Y ~ N(mu, sigma^2).
double clamped_gaussian_mean(double mu, double sigma, double lo, double hi) {
  if (!(sigma > 0)) return std::min(std::max(mu, lo), hi);
  constexpr double kInvSqrt2 = 0.70710678118654752440, kInvSqrt2Pi = 0.39894228040143267794;
  auto cdf = [&](double x) { return 0.5 * std::erfc(-x * kInvSqrt2); };
  auto pdf = [&](double x) { return std::isinf(x) ? 0.0 : kInvSqrt2Pi * std::exp(-0.5 * x * x); };
  const double a = (lo - mu) / sigma, b = (hi - mu) / sigma;
  const double below = cdf(a), above = 1.0 - cdf(b);
  return mu * (1.0 - below - above) + sigma * (pdf(a) - pdf(b)) + (std::isinf(lo) ? 0.0 : lo * below) +
         (std::isinf(hi) ? 0.0 : hi * above);
}

// W c for a per-input-channel vector c: [out]; for a conv every tap of channel i sees c[i].
at::Tensor weight_times(const at::Tensor& w, int64_t groups, const at::Tensor& c) {
  const int64_t out = w.size(0), cin = w.size(1);
  if (w.dim() == 2) return w.mul(c.reshape({1, cin})).sum({1});
  return w.flatten(2)
      .sum({2})
      .reshape({groups, out / groups, cin})
      .mul(c.reshape({groups, 1, cin}))
      .sum({2})
      .reshape({out});
}

// Per-input-channel sum of x as [C, M] rows: conv inputs have channels on dim 1, linear inputs on
// the last dim.
Value* channel_rows(Graph& g, Value* x, bool linear) {
  if (linear) return g.insert(c10::aten::transpose, {g.insert(c10::aten::flatten, {x, 0, -2}), 0, 1});
  return g.insert(c10::aten::flatten, {g.insert(c10::aten::transpose, {x, 0, 1}), 1, -1});
}

}  // namespace

std::vector<Node*> correction_targets(Graph& graph, const QConfig& qconfig, bool prepared) {
  std::vector<Node*> out;
  for (Node* n : weighted_layers(graph)) {
    const OpRule* rule = find_rule(n);
    if (rule->kind != QuantKind::kInt8 || qconfig.skips(n)) continue;
    if (prepared && !is_observed(n->input(0))) continue;
    out.push_back(n);
  }
  return out;
}

torch::jit::Module make_bias_probe(const torch::jit::Module& module, const QConfig& qconfig, bool prepared) {
  std::shared_ptr<Graph> graph = module.get_method("forward").graph()->copy();
  const std::vector<Node*> targets = correction_targets(*graph, qconfig, prepared);
  bypass_observers(*graph);
  torch::jit::EliminateDeadCode(graph);

  torch::jit::WithInsertPoint guard(graph->return_node());
  std::vector<Value*> sums, counts;
  for (Node* t : targets) {
    if (t->owningBlock() != graph->block()) {  // inside control flow: not corrected
      sums.push_back(graph->insertConstant(at::Tensor(weight_of(t).new_zeros({0}, c10::kDouble))));
      counts.push_back(graph->insertConstant(static_cast<int64_t>(0)));
      continue;
    }
    Value* rows = channel_rows(*graph, t->input(0), is_linear(t));
    sums.push_back(graph->insert(c10::aten::sum, {rows, std::vector<int64_t>{1}, false},
                                 {torch::jit::NamedValue("dtype", c10::kDouble)}));
    counts.push_back(graph->insert(c10::aten::size, {rows, 1}));
  }
  Value* sum_list = graph->insertNode(graph->createList(c10::TensorType::get(), sums))->output();
  Value* count_list = graph->insertNode(graph->createList(c10::IntType::get(), counts))->output();
  Value* result = graph->insertNode(graph->createTuple({sum_list, count_list}))->output();
  while (!graph->outputs().empty()) graph->eraseOutput(0);
  graph->registerOutput(result);
  torch::jit::EliminateDeadCode(graph);
  TORCH_CHECK(!graph->inputs().at(0)->hasUses(),
              "torchquantx.bias_correction: the model's forward reads module "
              "attributes other than observers; canonicalize (freeze) it first");

  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  torch::jit::Module probe(c10::QualifiedName("__torch__.torchquantx.BiasCorrectionProbe"), cu,
                           /*shouldMangle=*/true);
  probe.register_attribute("training", c10::BoolType::get(), false);
  graph->inputs().at(0)->setType(probe.type());
  probe.type()->addMethod(cu->create_function(c10::QualifiedName(*probe.type()->name(), "forward"), graph));
  return probe;
}

std::vector<at::Tensor> analytic_input_means(const std::vector<Node*>& targets, const PreActivationMap& stats) {
  std::vector<at::Tensor> means(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
    bool clamped = false;
    const PreActivation* source = nullptr;
    Value* v = targets[i]->input(0);
    while (source == nullptr) {
      const Node* p = v->node();
      if (p->inputs().empty()) break;  // a graph input or a constant
      const auto it = stats.find(p);
      if (it != stats.end()) {
        source = &it->second;
        break;
      }
      if (is_observer_call(p)) {
        v = p->input(1);
      } else if (const auto b = clamp_bounds(p)) {
        lo = std::max(lo, b->first);
        hi = std::min(hi, b->second);
        clamped = true;
        v = p->input(0);
      } else if (!clamped && (keeps_channel_mean(p) || is_batch_flatten(p, p->input(0)))) {
        // Before (in forward order) these see the clamped values; after a clamp they would not.
        v = p->input(0);
      } else {
        break;
      }
    }
    if (source == nullptr || lo > hi) continue;
    const int64_t c = source->mean.numel();
    at::Tensor m = source->mean.new_empty({c});
    auto mu = source->mean.accessor<double, 1>(), sigma = source->std.accessor<double, 1>();
    auto out = m.accessor<double, 1>();
    for (int64_t j = 0; j < c; ++j) out[j] = clamped_gaussian_mean(mu[j], sigma[j], lo, hi);
    const Node* t = targets[i];
    const int64_t in = weight_of(t).size(1) * std::max<int64_t>(groups_of(t), 1);
    if (in == c) {
      means[i] = m;
    } else if (is_linear(t) && in % c == 0) {  // a flattened (N, C, H, W): channel j fills in / C columns
      means[i] = m.reshape({c, 1}).expand({c, in / c}).reshape({in});
    }
  }
  return means;
}

int64_t correct_biases(Graph& graph, const std::vector<Node*>& targets, const std::vector<at::Tensor>& input_means,
                       const WeightSpec& weight_spec) {
  TORCH_CHECK(input_means.size() == targets.size(),
              "torchquantx.bias_correction: input_means should have one "
              "tensor per corrected layer (",
              targets.size(), "), got ", input_means.size());
  int64_t corrected = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    const at::Tensor& mean = input_means[i];
    if (!mean.defined() || mean.numel() == 0) continue;
    Node* n = targets[i];
    const at::Tensor w = weight_of(n);
    const int64_t groups = groups_of(n);
    if (w.scalar_type() != c10::kFloat || groups < 1) continue;
    const int64_t in = w.size(1) * groups;
    TORCH_CHECK(mean.dim() == 1 && mean.numel() == in, "torchquantx.bias_correction: input_means[", i, "] should have ",
                in, " values (the input channels of ", describe_value(n->output()), "), got shape ", mean.sizes());
    // The same quantization convert applies (weights.cpp), so the corrected error is the real one.
    const at::Tensor dw = quantize_weight(w, weight_spec).dequantize().to(c10::kDouble).sub(w.to(c10::kDouble));
    const at::Tensor error = weight_times(dw, groups, mean.to(c10::kDouble));
    const auto b = torch::jit::toIValue(n->input(2));
    const at::Tensor bias = b->isTensor() ? b->toTensor().to(c10::kDouble) : error.new_zeros({w.size(0)});
    torch::jit::WithInsertPoint guard(n);
    n->replaceInput(2, graph.insertConstant(bias.sub(error).to(w.scalar_type())));
    ++corrected;
  }
  return corrected;
}

}  // namespace tqx::passes

namespace torchquantx {
namespace {

using tqx::passes::QConfig;

// What a bias-correction entry point works on: a clone of a prepared module, or a canonicalized
// copy of a float model, and the qconfig its weights will be quantized with.
struct Subject {
  torch::jit::Module module;
  QConfig qconfig;
  bool prepared = false;
};

Subject subject_of(const char* fn, const torch::jit::Module& model, const std::string& qconfig,
                   tqx::passes::PreActivationMap* stats) {
  TORCH_CHECK(!model.hasattr(tqx::passes::kSummaryAttr), fn,
              ": the module is already converted; correct the "
              "prepared (or float) model, then convert");
  if (model.hasattr(tqx::passes::kQConfigAttr)) {
    TORCH_CHECK(qconfig.empty(), fn, ": a prepared module carries its own qconfig; leave qconfig unset, got '", qconfig,
                "'");
    return {model.clone(), QConfig::deserialize(model.attr(tqx::passes::kQConfigAttr).toStringRef()), true};
  }
  TORCH_CHECK(!model.is_training(), fn, ": the model should be in eval mode; call model.eval() first");
  tqx::passes::PreActivationMap unused;
  torch::jit::Module canonical = tqx::passes::canonicalize_with_preactivation(model, stats ? stats : &unused);
  return {canonical, QConfig::preset_named(qconfig.empty() ? "x86" : qconfig), false};
}

torch::jit::Module apply_means(Subject& s, const std::vector<at::Tensor>& means) {
  auto graph = s.module.get_method("forward").graph();
  const auto targets = tqx::passes::correction_targets(*graph, s.qconfig, s.prepared);
  tqx::passes::correct_biases(*graph, targets, means, s.qconfig.weight_spec());
  torch::jit::EliminateDeadCode(graph);
  return s.module;
}

}  // namespace

torch::jit::Module bias_correction_probe(const torch::jit::Module& model, const std::string& qconfig) {
  const Subject s = subject_of("torchquantx.bias_correction", model, qconfig, nullptr);
  return tqx::passes::make_bias_probe(s.module, s.qconfig, s.prepared);
}

torch::jit::Module bias_correction_apply(const torch::jit::Module& model, const std::vector<at::Tensor>& input_means,
                                         const std::string& qconfig) {
  Subject s = subject_of("torchquantx.bias_correction", model, qconfig, nullptr);
  return apply_means(s, input_means);
}

torch::jit::Module bias_correction(const torch::jit::Module& model,
                                   const std::vector<std::vector<c10::IValue>>& batches, const std::string& qconfig) {
  TORCH_CHECK(!batches.empty(),
              "torchquantx.bias_correction: batches should hold at least one batch of inputs "
              "(for data-free correction use bias_correction_analytic), got none");
  Subject s = subject_of("torchquantx.bias_correction", model, qconfig, nullptr);
  torch::jit::Module probe = tqx::passes::make_bias_probe(s.module, s.qconfig, s.prepared);
  std::vector<at::Tensor> sums;
  std::vector<int64_t> counts;
  const at::NoGradGuard no_grad;
  for (size_t b = 0; b < batches.size(); ++b) {
    const auto out = probe.forward(batches[b]).toTuple();
    const auto batch_sums = out->elements().at(0).toTensorVector();
    const auto batch_counts = out->elements().at(1).toIntVector();
    if (b == 0) {
      sums = batch_sums;
      counts = batch_counts;
      continue;
    }
    for (size_t i = 0; i < sums.size(); ++i) {
      sums[i] = sums[i].add(batch_sums[i]);
      counts[i] += batch_counts[i];
    }
  }
  std::vector<at::Tensor> means(sums.size());
  for (size_t i = 0; i < sums.size(); ++i) {
    if (counts[i] > 0) means[i] = sums[i].div(static_cast<double>(counts[i]));
  }
  return apply_means(s, means);
}

torch::jit::Module bias_correction_analytic(const torch::jit::Module& model, const std::string& qconfig) {
  TORCH_CHECK(!model.hasattr(tqx::passes::kQConfigAttr),
              "torchquantx.bias_correction_analytic: a prepared module "
              "no longer knows its BatchNorm statistics; correct the float model (or equalize's result) and prepare "
              "that, or pass calibration batches to bias_correction");
  tqx::passes::PreActivationMap stats;
  Subject s = subject_of("torchquantx.bias_correction_analytic", model, qconfig, &stats);
  auto graph = s.module.get_method("forward").graph();
  const auto targets = tqx::passes::correction_targets(*graph, s.qconfig, s.prepared);
  return apply_means(s, tqx::passes::analytic_input_means(targets, stats));
}

}  // namespace torchquantx

namespace tqx::passes {
namespace {

torch::jit::Module module_arg(const char* op, const c10::IValue& v) {
  TORCH_CHECK(v.isObject() && v.toObject()->type()->is_module(), op,
              ": module should be a TorchScript module (pass "
              "scripted_model._c, or use torchquantx.bias_correction, which accepts nn.Module), got ",
              v.tagKind());
  return torch::jit::Module(v.toObject());
}

c10::IValue bias_correction_op(c10::IValue module, std::vector<std::vector<at::Tensor>> batches,
                               c10::optional<std::string> qconfig) {
  std::vector<std::vector<c10::IValue>> inputs;
  for (const auto& batch : batches) inputs.emplace_back(batch.begin(), batch.end());
  return torchquantx::bias_correction(module_arg("quantx::bias_correction", module), inputs, qconfig.value_or(""))
      ._ivalue();
}

c10::IValue bias_correction_analytic_op(c10::IValue module, c10::optional<std::string> qconfig) {
  return torchquantx::bias_correction_analytic(module_arg("quantx::bias_correction_analytic", module),
                                               qconfig.value_or(""))
      ._ivalue();
}

c10::IValue bias_correction_probe_op(c10::IValue module, c10::optional<std::string> qconfig) {
  return torchquantx::bias_correction_probe(module_arg("quantx::bias_correction_probe", module), qconfig.value_or(""))
      ._ivalue();
}

c10::IValue bias_correction_apply_op(c10::IValue module, std::vector<at::Tensor> input_means,
                                     c10::optional<std::string> qconfig) {
  return torchquantx::bias_correction_apply(module_arg("quantx::bias_correction_apply", module), input_means,
                                            qconfig.value_or(""))
      ._ivalue();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("bias_correction(Any module, Tensor[][] batches, str? qconfig=None) -> Any", bias_correction_op);
  m.def("bias_correction_analytic(Any module, str? qconfig=None) -> Any", bias_correction_analytic_op);
  m.def("bias_correction_probe(Any module, str? qconfig=None) -> Any", bias_correction_probe_op);
  m.def("bias_correction_apply(Any module, Tensor[] input_means, str? qconfig=None) -> Any", bias_correction_apply_op);
}

}  // namespace tqx::passes
