// AdaRound: input-row sampling, the per-layer rounding optimisation, the quantx::adaround op.
#include "passes/adaround.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/im2col.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/where.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/jit/api/compilation_unit.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/library.h>

#include <cmath>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include "api/recovery.h"
#include "passes/bias_correction.h"
#include "passes/graph_utils.h"
#include "passes/weights.h"

namespace tqx::passes {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

constexpr double kZeta = 1.1, kGamma = -0.1;  // the rectified sigmoid's stretch (paper, eq. 23)

std::optional<std::vector<int64_t>> int_list(const Node* n, size_t i) {
  const auto v = torch::jit::toIValue(n->input(i));
  if (!v || !v->isIntList()) return std::nullopt;
  return v->toIntVector();
}

at::Tensor rectified_sigmoid(const at::Tensor& v) { return v.sigmoid().mul(kZeta - kGamma).add(kGamma).clamp(0, 1); }

// sum over output channels, mean over rows, of (X d^T)^2 for d [g, o, k] and rows [g, m, k] or
// their Gram matrix [g, k, k] / m (cheaper when k < m; the same value).
at::Tensor output_error(const at::Tensor& d, const at::Tensor& rows, const at::Tensor& gram) {
  if (gram.defined()) return d.bmm(gram).mul(d).sum();
  return rows.bmm(d.transpose(1, 2)).pow(2).sum().div(static_cast<double>(rows.size(1)));
}

}  // namespace

torch::jit::Module make_adaround_probe(const torch::jit::Module& module, const QConfig& qconfig, bool prepared) {
  std::shared_ptr<Graph> graph = module.get_method("forward").graph()->copy();
  const std::vector<Node*> targets = correction_targets(*graph, qconfig, prepared);
  bypass_observers(*graph);
  torch::jit::WithInsertPoint guard(graph->return_node());
  std::vector<Value*> inputs;
  for (Node* t : targets) {
    inputs.push_back(t->owningBlock() == graph->block()
                         ? t->input(0)
                         : graph->insertConstant(at::Tensor(torch::jit::toIValue(t->input(1))->toTensor().new_zeros({0}))));
  }
  Value* list = graph->insertNode(graph->createList(c10::TensorType::get(), inputs))->output();
  while (!graph->outputs().empty()) graph->eraseOutput(0);
  graph->registerOutput(list);
  torch::jit::EliminateDeadCode(graph);
  TORCH_CHECK(!graph->inputs().at(0)->hasUses(),
              "torchquantx.adaround: the model's forward reads module attributes other than observers; "
              "canonicalize (freeze) it first");
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  torch::jit::Module probe(c10::QualifiedName("__torch__.torchquantx.AdaRoundProbe"), cu, /*shouldMangle=*/true);
  probe.register_attribute("training", c10::BoolType::get(), false);
  graph->inputs().at(0)->setType(probe.type());
  probe.type()->addMethod(cu->create_function(c10::QualifiedName(*probe.type()->name(), "forward"), graph));
  return probe;
}

at::Tensor sample_input_rows(const Node* layer, const at::Tensor& x, int64_t max_rows, at::Generator gen) {
  if (!x.defined() || x.numel() == 0 || x.scalar_type() != c10::kFloat) return {};
  const at::Tensor w = torch::jit::toIValue(layer->input(1))->toTensor();
  at::Tensor rows;  // [m, groups * k]
  int64_t groups = 1;
  if (layer->kind() == c10::aten::linear) {
    rows = x.reshape({-1, x.size(-1)});
  } else if (layer->kind() == c10::aten::conv2d || layer->kind() == c10::aten::conv1d) {
    const bool one_d = layer->kind() == c10::aten::conv1d;
    const auto stride = int_list(layer, 3), padding = int_list(layer, 4), dilation = int_list(layer, 5);
    const auto g = torch::jit::toIValue(layer->input(6));
    if (!stride || !padding || !dilation || !g || !g->isInt()) return {};  // e.g. padding="same"
    groups = g->toInt();
    auto two = [&](const std::vector<int64_t>& v, int64_t pad) {
      return one_d ? std::vector<int64_t>{pad, v.at(0)} : std::vector<int64_t>{v.at(0), v.size() > 1 ? v[1] : v[0]};
    };
    at::Tensor in = x.dim() == (one_d ? 2 : 3) ? x.unsqueeze(0) : x;
    if (one_d) in = in.unsqueeze(2);
    const std::vector<int64_t> kernel = one_d ? std::vector<int64_t>{1, w.size(2)}
                                              : std::vector<int64_t>{w.size(2), w.size(3)};
    const at::Tensor cols = at::im2col(in.contiguous(), kernel, two(*dilation, 1), two(*padding, 0), two(*stride, 1));
    rows = cols.transpose(1, 2).reshape({-1, cols.size(1)});  // [n * positions, c * taps]
  } else {
    return {};
  }
  const int64_t m = rows.size(0), k = rows.size(1) / groups;
  if (m > max_rows) rows = rows.index_select(0, at::rand({m}, gen).argsort().slice(0, 0, max_rows));
  return rows.reshape({rows.size(0), groups, k}).transpose(0, 1).contiguous();
}

AdaRoundLayer adaround_weight(const at::Tensor& weight, const at::Tensor& rows, const WeightSpec& spec,
                              const AdaRoundOptions& opt) {
  TORCH_CHECK(rows.dim() == 3 && rows.size(1) > 0, "torchquantx.adaround: input rows should be [groups, rows, k], got ",
              rows.sizes());
  const int64_t out = weight.size(0), groups = rows.size(0), k = rows.size(2);
  TORCH_CHECK(weight.numel() == out * k && out % groups == 0, "torchquantx.adaround: weight of shape ", weight.sizes(),
              " does not match input rows of shape ", rows.sizes());
  const QuantizedWeight q = quantize_weight(weight, spec);
  const int64_t channels = q.scale.numel();
  const at::Tensor w = weight.reshape({channels, -1});  // per channel (or one row) for the qparams
  const at::Tensor s = q.scale.to(c10::kFloat).reshape({channels, 1});
  const at::Tensor zp = q.zero_point.to(c10::kFloat).reshape({channels, 1});
  const at::Tensor rtn = q.values.reshape({channels, -1}).to(c10::kFloat);
  // floor(w * inv_scale), inv_scale in float32 as Note [Rounding] says.
  const at::Tensor floor = w.mul(s.reciprocal()).floor();
  const at::Tensor rest = w.mul(s.reciprocal()).sub(floor).clamp(0, 1);
  // Elements setting a channel's range keep their values; the others stay inside [lo, hi].
  const at::Tensor wmin = std::get<0>(w.min(1, true)), wmax = std::get<0>(w.max(1, true));
  const at::Tensor fixed = w.eq(wmin).logical_or(w.eq(wmax));
  const at::Tensor lo_range = wmin.clamp_max(0), hi_range = wmax.clamp_min(0);
  at::Tensor qlo = lo_range.div(s).ceil().add(zp).clamp(spec.qmin(), spec.qmax());
  at::Tensor qhi = hi_range.div(s).floor().add(zp).clamp(spec.qmin(), spec.qmax());
  qlo = at::where(qlo.sub(zp).mul(s).lt(lo_range), qlo.add(1), qlo);  // float32 rounding at the ends
  qhi = at::where(qhi.sub(zp).mul(s).gt(hi_range), qhi.sub(1), qhi);

  auto grid = [&](const at::Tensor& h) {  // integers for a rounding h (soft or hard)
    return at::where(fixed, rtn, floor.add(h).add(zp).clamp(qlo, qhi));
  };
  auto dequant = [&](const at::Tensor& ints) { return ints.sub(zp).mul(s); };
  const at::Tensor rows_f = rows.to(c10::kFloat);
  const at::Tensor gram =
      k < rows.size(1) ? rows_f.transpose(1, 2).bmm(rows_f).div(static_cast<double>(rows.size(1))) : at::Tensor();
  auto error_of = [&](const at::Tensor& wq) {
    return output_error(wq.sub(w).reshape({groups, out / groups, k}), rows_f, gram);
  };

  AdaRoundLayer result;
  result.mse_nearest = error_of(dequant(rtn)).item<double>() / out;
  // V with h(V) = rest: the soft rounding starts at the float weights.
  at::Tensor v = rest.sub(kGamma).div(kZeta - kGamma).clamp(1e-4, 1 - 1e-4).logit().detach().clone();
  at::Tensor m1 = v.new_zeros(v.sizes()), m2 = v.new_zeros(v.sizes());
  constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  {
    const c10::AutoGradMode grad(true);
    v.set_requires_grad(true);
    const int64_t warm = static_cast<int64_t>(opt.warmup * opt.iters);
    for (int64_t it = 0; it < opt.iters; ++it) {
      const at::Tensor h = rectified_sigmoid(v);
      at::Tensor loss = error_of(dequant(grid(h)));
      if (it >= warm) {
        const double t = static_cast<double>(it - warm) / std::max<int64_t>(opt.iters - warm, 1);
        const double beta = opt.beta_start + (opt.beta_end - opt.beta_start) * t;
        loss = loss.add(h.mul(2).sub(1).abs().pow(beta).neg().add(1).sum().mul(opt.reg));
      }
      loss.backward();
      const at::NoGradGuard no_grad;
      const at::Tensor g = v.grad();
      m1.mul_(b1).add_(g, 1 - b1);
      m2.mul_(b2).addcmul_(g, g, 1 - b2);
      const double c1 = 1 - std::pow(b1, it + 1), c2 = 1 - std::pow(b2, it + 1);
      v.sub_(m1.div(c1).div(m2.div(c2).sqrt().add(eps)).mul(opt.lr));
      v.mutable_grad().zero_();
    }
  }
  const at::NoGradGuard no_grad;
  const at::Tensor ints = grid(v.detach().ge(0).to(c10::kFloat));
  const at::Tensor snapped = at::where(fixed, w, dequant(ints));
  result.mse_adaround = error_of(snapped).item<double>() / out;
  if (!(result.mse_adaround < result.mse_nearest)) {
    result.kept_nearest = true;
    result.mse_adaround = result.mse_nearest;
    result.weight = weight;
    return result;
  }
  result.weight = snapped.reshape(weight.sizes()).contiguous();
  // Convert's round-to-nearest must give back exactly these integers under the same qparams.
  const QuantizedWeight check = quantize_weight(result.weight, spec);
  TORCH_CHECK(check.scale.equal(q.scale) && check.zero_point.equal(q.zero_point) &&
                  check.values.reshape({channels, -1}).to(c10::kFloat).equal(ints),
              "torchquantx.adaround: internal error: the snapped weights do not quantize back onto their grid");
  return result;
}

}  // namespace tqx::passes

namespace torchquantx {
namespace {

using tqx::passes::QConfig;

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(4);
  os << v;
  return os.str();
}

}  // namespace

torch::jit::Module adaround(const torch::jit::Module& model, const std::vector<std::vector<c10::IValue>>& batches,
                            const std::string& qconfig, const AdaRoundOptions& options,
                            const std::function<void(int64_t, int64_t)>& progress) {
  constexpr const char* fn = "torchquantx.adaround";
  TORCH_CHECK(!batches.empty(), fn, ": batches should hold at least one batch of inputs, got none");
  TORCH_CHECK(options.iters >= 0, fn, ": iters should be >= 0, got ", options.iters);
  TORCH_CHECK(options.max_rows >= 1, fn, ": max_rows should be >= 1, got ", options.max_rows);
  TORCH_CHECK(options.reg >= 0 && options.lr > 0, fn, ": reg should be >= 0 and lr > 0, got reg=", options.reg,
              " lr=", options.lr);
  TORCH_CHECK(!model.hasattr(tqx::passes::kSummaryAttr), fn,
              ": the module is already converted; round the prepared (or float) model, then convert");
  torch::jit::Module subject;
  QConfig q;
  bool prepared = model.hasattr(tqx::passes::kQConfigAttr);
  if (prepared) {
    TORCH_CHECK(qconfig.empty(), fn, ": a prepared module carries its own qconfig; leave qconfig unset, got '",
                qconfig, "'");
    subject = model.clone();
    q = QConfig::deserialize(model.attr(tqx::passes::kQConfigAttr).toStringRef());
  } else {
    TORCH_CHECK(!model.is_training(), fn, ": the model should be in eval mode; call model.eval() first");
    tqx::passes::PreActivationMap unused;
    subject = tqx::passes::canonicalize_with_preactivation(model, &unused);
    q = QConfig::preset_named(qconfig.empty() ? "x86" : qconfig);
  }
  auto graph = subject.get_method("forward").graph();
  const auto targets = tqx::passes::correction_targets(*graph, q, prepared);
  torch::jit::Module probe = tqx::passes::make_adaround_probe(subject, q, prepared);

  // One pass over the data: up to max_rows input rows per layer and batch, then max_rows overall.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(options.seed));
  std::vector<std::vector<at::Tensor>> pools(targets.size());
  {
    const at::NoGradGuard no_grad;
    for (size_t b = 0; b < batches.size(); ++b) {
      const auto inputs = probe.forward(batches[b]).toTensorVector();
      for (size_t i = 0; i < targets.size(); ++i) {
        at::Tensor rows = tqx::passes::sample_input_rows(targets[i], inputs[i], options.max_rows, gen);
        if (rows.defined()) pools[i].push_back(rows);
      }
    }
  }
  std::ostringstream report;
  const int64_t total = static_cast<int64_t>(targets.size());
  for (int64_t i = 0; i < total; ++i) {
    torch::jit::Node* n = targets[i];
    if (!pools[i].empty()) {
      at::Tensor rows = at::cat(pools[i], 1);
      if (rows.size(1) > options.max_rows) {
        rows = rows.index_select(1, at::rand({rows.size(1)}, gen).argsort().slice(0, 0, options.max_rows));
      }
      const at::Tensor w = torch::jit::toIValue(n->input(1))->toTensor();
      const auto r = tqx::passes::adaround_weight(w, rows, q.weight_spec(), options);
      const std::string layer = tqx::passes::layer_of(n);
      report << (layer.empty() ? "<top>" : layer) << "  " << n->kind().toQualString()
             << "  mse_nearest=" << fmt(r.mse_nearest) << " mse_adaround=" << fmt(r.mse_adaround)
             << (r.kept_nearest ? "  (kept round-to-nearest)" : "") << "\n";
      if (!r.kept_nearest) {
        torch::jit::WithInsertPoint guard(n);
        n->replaceInput(1, graph->insertConstant(r.weight));
      }
    }
    if (progress) progress(i + 1, total);
  }
  torch::jit::EliminateDeadCode(graph);
  const std::string attr = "_tqx_adaround";
  if (subject.hasattr(attr)) {
    subject.setattr(attr, report.str());
  } else {
    subject.register_attribute(attr, c10::StringType::get(), report.str());
  }
  return subject;
}

}  // namespace torchquantx

namespace tqx::passes {
namespace {

c10::IValue adaround_op(c10::IValue module, std::vector<std::vector<at::Tensor>> batches,
                        c10::optional<std::string> qconfig, int64_t iters, int64_t max_rows, double reg,
                        int64_t seed) {
  TORCH_CHECK(module.isObject() && module.toObject()->type()->is_module(),
              "quantx::adaround: module should be a TorchScript module (pass scripted_model._c, or use "
              "torchquantx.adaround, which accepts nn.Module), got ", module.tagKind());
  std::vector<std::vector<c10::IValue>> inputs;
  for (const auto& batch : batches) inputs.emplace_back(batch.begin(), batch.end());
  torchquantx::AdaRoundOptions options;
  options.iters = iters;
  options.max_rows = max_rows;
  options.reg = reg;
  options.seed = seed;
  return torchquantx::adaround(torch::jit::Module(module.toObject()), inputs, qconfig.value_or(""), options)
      ._ivalue();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("adaround(Any module, Tensor[][] batches, str? qconfig=None, int iters=1000, int max_rows=4096, "
        "float reg=0.01, int seed=0) -> Any",
        adaround_op);
}

}  // namespace tqx::passes
