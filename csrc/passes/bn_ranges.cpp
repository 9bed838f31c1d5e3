// Data-free activation ranges from BatchNorm statistics (see bn_ranges.h) and the
// quantx::batchnorm_ranges operator.
#include "passes/bn_ranges.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "passes/equalize.h"
#include "passes/graph_utils.h"
#include "passes/op_registry.h"

namespace tqx::passes {
namespace {

using torch::jit::Node;
using torch::jit::Value;

struct Range {
  double lo;
  double hi;
};

std::optional<double> constant_number(const Value* v) {
  const auto iv = torch::jit::toIValue(v);
  if (!iv || !(iv->isDouble() || iv->isInt())) return std::nullopt;
  return iv->isDouble() ? iv->toDouble() : static_cast<double>(iv->toInt());
}

// The bounds an activation node imposes (relu: [0, inf), relu6: [0, 6], hardtanh / clamp:
// their constant limits), or nullopt when `n` is not one.
std::optional<Range> clamp_of(const Node* n) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  const auto k = n->kind();
  if (k == c10::aten::relu) return Range{0.0, inf};
  if (k == c10::aten::relu6) return Range{0.0, 6.0};
  if (k == c10::aten::hardtanh || k == c10::aten::clamp) {
    const auto lo = constant_number(n->input(1)), hi = constant_number(n->input(2));
    if (k == c10::aten::hardtanh && (!lo || !hi)) return std::nullopt;
    return Range{lo.value_or(-inf), hi.value_or(inf)};
  }
  return std::nullopt;
}

class RangeFinder {
 public:
  RangeFinder(const torch::jit::Module& module, double n, Range input) : module_(module), n_(n), input_(input) {
    graph_ = module.get_method("forward").graph();
    const auto layers = weighted_layers(*graph_);
    TORCH_CHECK(module.hasattr("_tqx_preactivation"), "torchquantx.calibrate_from_batchnorm: the prepared model "
                "has no BatchNorm statistics (_tqx_preactivation): the model had no BatchNorm after a convolution, "
                "or it was prepared by an older torchquantx; calibrate it with data instead");
    for (const auto& entry : module.attr("_tqx_preactivation").toGenericDict()) {
      const int64_t i = entry.key().toInt();
      if (i < 0 || i >= static_cast<int64_t>(layers.size())) continue;
      const at::Tensor t = entry.value().toTensor();
      stats_[layers[i]] = {t[0], t[1]};
    }
  }

  std::vector<ObserverRange> run() {
    std::vector<ObserverRange> out;
    for_each_node(graph_->block(), [&](Node* call) {
      if (call->kind() != c10::prim::CallMethod || call->input(0)->node()->kind() != c10::prim::GetAttr) return;
      const std::string attr = call->input(0)->node()->s(c10::attr::name);
      if (attr.rfind(kObserverPrefix, 0) != 0) return;
      std::string source;
      const auto r = range_of(call->input(1), &source);
      if (!r) return;
      ranges_[call->output()] = *r;
      ranges_[call->input(1)] = *r;
      out.push_back({attr, r->lo, r->hi, source});
    });
    return out;
  }

 private:
  // Follows observer calls and same-qparams ops back to a value with a known range (clamps
  // such as an unfused relu clip it on the way).
  std::optional<Range> known(Value* v) const {
    const auto it = ranges_.find(v);
    if (it != ranges_.end()) return it->second;
    Node* n = v->node();
    if (n->kind() == c10::prim::CallMethod) return known(n->input(1));
    if (const auto c = clamp_of(n)) {
      const auto r = known(n->input(0));
      if (!r) return std::nullopt;
      return Range{std::max(r->lo, c->lo), std::min(r->hi, c->hi)};
    }
    const OpRule* rule = find_rule(n);
    if (rule == nullptr || rule->kind != QuantKind::kSameQParams) return std::nullopt;
    return known(n->input(0));
  }

  std::optional<Range> range_of(Value* v, std::string* source) const {
    if (v->node()->kind() == c10::prim::Param) {
      *source = "input";
      return input_;
    }
    // Activations clip whatever comes before them.
    Node* n = v->node();
    Range clip{-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
    while (const auto c = clamp_of(n)) {
      clip = {std::max(clip.lo, c->lo), std::min(clip.hi, c->hi)};
      n = n->input(0)->node();
    }
    std::optional<Range> r = from_batchnorm(n);
    *source = "batchnorm";
    if (!r) {
      r = by_intervals(n);
      *source = "interval";
    }
    if (!r) return std::nullopt;
    return Range{std::max(r->lo, clip.lo), std::min(r->hi, clip.hi)};
  }

  std::optional<Range> from_batchnorm(const Node* n) const {
    const auto it = stats_.find(n);
    if (it == stats_.end()) return std::nullopt;
    const at::Tensor& mean = it->second.first;
    const at::Tensor sd = it->second.second.abs();
    return Range{mean.sub(sd, n_).min().item<double>(), mean.add(sd, n_).max().item<double>()};
  }

  std::optional<Range> by_intervals(const Node* n) const {
    const auto k = n->kind();
    if (k == c10::aten::add || k == c10::aten::sub) {
      const auto a = known(n->input(0)), b = known(n->input(1));
      const auto alpha = n->inputs().size() > 2 ? constant_number(n->input(2)) : std::optional<double>(1.0);
      if (!a || !b || !alpha || *alpha != 1.0) return std::nullopt;
      return k == c10::aten::add ? Range{a->lo + b->lo, a->hi + b->hi} : Range{a->lo - b->hi, a->hi - b->lo};
    }
    const OpRule* rule = find_rule(n);
    if (rule == nullptr || rule->weight < 0) return std::nullopt;
    const auto x = known(n->input(rule->activations[0]));
    const auto w = torch::jit::toIValue(n->input(rule->weight));
    const auto b = torch::jit::toIValue(n->input(rule->weight + 1));
    if (!x || !w || !w->isTensor() || !b) return std::nullopt;
    // y_o = b_o + sum_i w_oi x_i with every x_i in [lo, hi]: the extremes take each product's.
    const at::Tensor wt = w->toTensor().to(c10::kDouble).flatten(1);
    at::Tensor lo_terms = wt.mul(x->lo).minimum(wt.mul(x->hi)).sum(1);
    at::Tensor hi_terms = wt.mul(x->lo).maximum(wt.mul(x->hi)).sum(1);
    if (b->isTensor()) {
      lo_terms = lo_terms.add(b->toTensor().to(c10::kDouble));
      hi_terms = hi_terms.add(b->toTensor().to(c10::kDouble));
    }
    return Range{lo_terms.min().item<double>(), hi_terms.max().item<double>()};
  }

  const torch::jit::Module& module_;
  double n_;
  Range input_;
  std::shared_ptr<torch::jit::Graph> graph_;
  std::unordered_map<const Node*, std::pair<at::Tensor, at::Tensor>> stats_;  // layer -> (beta, |gamma|)
  std::unordered_map<const Value*, Range> ranges_;
};

}  // namespace

std::vector<ObserverRange> batchnorm_ranges(const torch::jit::Module& prepared, double n, double input_lo,
                                            double input_hi) {
  TORCH_CHECK(n > 0, "torchquantx.calibrate_from_batchnorm: n should be > 0, got ", n);
  TORCH_CHECK(input_lo <= input_hi, "torchquantx.calibrate_from_batchnorm: input_range should be (lo, hi) with "
              "lo <= hi, got (", input_lo, ", ", input_hi, ")");
  return RangeFinder(prepared, n, {input_lo, input_hi}).run();
}

namespace {

std::tuple<std::vector<std::string>, std::vector<double>, std::vector<double>, std::vector<std::string>>
batchnorm_ranges_op(c10::IValue module, double n, double input_lo, double input_hi) {
  TORCH_CHECK(module.isObject() && module.toObject()->type()->is_module(),
              "quantx::batchnorm_ranges: module should be a prepared TorchScript module (its ._c), got ",
              module.tagKind());
  const auto ranges = batchnorm_ranges(torch::jit::Module(module.toObject()), n, input_lo, input_hi);
  std::vector<std::string> names, sources;
  std::vector<double> lo, hi;
  for (const auto& r : ranges) {
    names.push_back(r.observer);
    lo.push_back(r.lo);
    hi.push_back(r.hi);
    sources.push_back(r.source);
  }
  return {names, lo, hi, sources};
}

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("batchnorm_ranges(Any module, float n=6., float input_lo=-3., float input_hi=3.) -> (str[] observers, "
        "float[] lo, float[] hi, str[] sources)",
        batchnorm_ranges_op);
}

}  // namespace
}  // namespace tqx::passes
