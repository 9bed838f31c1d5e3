// Prepare-for-QAT pass: the PTQ plan with trainable weights, simulated BatchNorm folding and
// fused observe + fake-quantize objects; and its way back to a prepared module for convert.
#include "passes/prepare_qat.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/library.h>

#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "kernels/qparams.h"
#include "ops/qat.h"
#include "passes/canonicalize.h"
#include "passes/graph_utils.h"
#include "passes/insert_observers.h"
#include "passes/op_registry.h"

namespace tqx::passes {
namespace {

using torch::jit::Graph;
using torch::jit::Module;
using torch::jit::Node;
using torch::jit::Value;

const c10::Symbol kFakeQuantizeWeight = c10::Symbol::fromQualString("quantx::fake_quantize_weight");
const c10::Symbol kFoldWeight = c10::Symbol::fromQualString("quantx::qat_fold_weight");
const c10::Symbol kBnOutput = c10::Symbol::fromQualString("quantx::qat_bn_output");
constexpr const char* kLearnableForward = "forward_learnable";
constexpr const char* kLsqScalePrefix = "_tqx_lsq_scale_";
constexpr const char* kLsqZeroPointPrefix = "_tqx_lsq_zero_point_";

// The fake-quantizer attribute a prim::CallMethod calls, or "" for other calls.
std::string fake_quantizer_of(Node* n) {
  if (n->kind() != c10::prim::CallMethod) return "";
  Node* get = n->input(0)->node();
  if (get->kind() != c10::prim::GetAttr || get->s(c10::attr::name).rfind(kObserverPrefix, 0) != 0) return "";
  return get->s(c10::attr::name);
}

// The BatchNorm a convolution feeds, seen just before canonicalize folds it.
struct BnOf {
  std::string path;  // module path of the BatchNorm ("layer1.0.bn1")
  double eps;
};

std::optional<Module> submodule(const Module& root, const std::string& path) {
  Module cur = root;
  size_t start = 0;
  while (start < path.size()) {
    const size_t dot = path.find('.', start);
    const std::string name = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur.hasattr(name)) return std::nullopt;
    const c10::IValue v = cur.attr(name);
    if (!v.isModule()) return std::nullopt;
    cur = v.toModule();
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

at::Tensor tensor_attr(const Module& m, const char* name) {
  if (!m.hasattr(name)) return at::Tensor();
  const c10::IValue v = m.attr(name);
  return v.isTensor() ? v.toTensor() : at::Tensor();
}

// True when the value reaches `n` through observed or same-qparams values only, i.e. the op's
// activation input will arrive quantized after convert.
bool arrives_quantized(Value* v) {
  for (;;) {
    Node* p = v->node();
    if (p->kind() == c10::prim::CallMethod && p->input(0)->node()->kind() == c10::prim::GetAttr &&
        p->input(0)->node()->s(c10::attr::name).rfind(kObserverPrefix, 0) == 0) {
      return true;
    }
    const OpRule* rule = find_rule(p);
    if (rule == nullptr || rule->kind != QuantKind::kSameQParams) return false;
    v = p->input(0);
  }
}

class QatBuilder {
 public:
  QatBuilder(Module& qat, const Module& source, const QConfig& q)
      : qat_(qat), source_(source), q_(q), graph_(qat.get_method("forward").graph()) {}

  void run(const std::unordered_map<const Node*, BnOf>& bn_of, std::string* report) {
    self_ = graph_->inputs().at(0);
    if (!qat_.hasattr("training")) qat_.register_attribute("training", c10::BoolType::get(), true);
    qat_.register_attribute(kBnFrozenAttr, c10::BoolType::get(), false);
    {
      torch::jit::WithInsertPoint guard(graph_->block()->nodes().front());
      training_ = graph_->insertGetAttr(self_, "training");
      Value* frozen = graph_->insertGetAttr(self_, kBnFrozenAttr);
      Value* live = graph_->insert(c10::aten::__not__, {frozen});
      bn_training_ = graph_->insert(c10::aten::__and__, {training_, live});
    }
    replace_observers();
    std::vector<Node*> layers;
    for_each_node(graph_->block(), [&](Node* n) {
      const OpRule* rule = find_rule(n);
      if (rule != nullptr && rule->kind == QuantKind::kInt8 && rule->weight >= 0) layers.push_back(n);
    });
    for (Node* n : layers) {
      const auto it = bn_of.find(n);
      rewrite_layer(n, it == bn_of.end() ? nullptr : &it->second);
    }
    std::string names;
    for (const auto& [key, name] : added_) {
      (void)key;
      names += names.empty() ? name : "," + name;
    }
    qat_.register_attribute(kQatAttr, c10::StringType::get(), names);
    torch::jit::EliminateDeadCode(graph_);
    if (report) {
      for (const auto& line : report_) *report += line + "\n";
    }
  }

 private:
  // The PTQ observers become fake-quantizers over the same activation range; their calls get
  // the module's training flag.
  void replace_observers() {
    const kernels::QRange r = kernels::quant_range(
        q_.activation_dtype == c10::kQInt8 ? kernels::QFormat::kInt8 : kernels::QFormat::kUInt8,
        q_.activation_reduce_range);
    std::vector<std::string> attrs;
    for (const auto& a : qat_.named_attributes(/*recurse=*/false)) {
      if (a.name.rfind(kObserverPrefix, 0) == 0) attrs.push_back(a.name);
    }
    std::unordered_map<std::string, c10::TypePtr> types;
    for (const auto& attr : attrs) {
      const c10::IValue fq = ops::make_fake_quantize(r.qmin, r.qmax);
      qat_._ivalue()->unsafeRemoveAttr(attr);
      qat_._ivalue()->type()->unsafeRemoveAttribute(attr);
      qat_.register_attribute(attr, fq.type(), fq);
      types[attr] = fq.type();
    }
    for_each_node(graph_->block(), [&](Node* n) {
      if (n->kind() != c10::prim::GetAttr) return;
      const auto it = types.find(n->s(c10::attr::name));
      if (it == types.end()) return;
      n->output()->setType(it->second);
      for (const auto& use : n->output()->uses()) {
        if (use.user->kind() == c10::prim::CallMethod) use.user->addInput(training_);
      }
    });
  }

  // A trainable copy of `t` as an attribute of the QAT module (once per source tensor).
  Value* attr_for(const std::string& path, const char* leaf, const at::Tensor& t, bool is_buffer) {
    const std::string key = path + "." + leaf;
    auto it = added_.find(key);
    if (it == added_.end()) {
      std::string name = path;
      for (char& c : name) {
        if (c == '.') c = '_';
      }
      name = name.empty() ? leaf : name + "_" + leaf;
      while (qat_.hasattr(name)) name = "_" + name;
      at::Tensor copy = t.detach().clone();
      if (!is_buffer) copy.set_requires_grad(true);
      qat_.register_parameter(name, copy, is_buffer);
      it = added_.emplace(key, name).first;
    }
    return graph_->insertGetAttr(self_, it->second);
  }

  Value* none() { return graph_->insertConstant(c10::IValue()); }

  void rewrite_layer(Node* n, const BnOf* bn) {
    const std::string path = layer_of(n);
    const std::optional<Module> layer = submodule(source_, path);
    const at::Tensor w = layer ? tensor_attr(*layer, "weight") : at::Tensor();
    const at::Tensor folded = torch::jit::toIValue(n->input(1))->toTensor();
    const std::string where = (path.empty() ? std::string("<top>") : path) + " (" + n->kind().toQualString() + ")";
    std::optional<Module> bn_mod = bn ? submodule(source_, bn->path) : std::nullopt;
    const bool matches = w.defined() && (bn ? w.sizes() == folded.sizes() && bn_mod.has_value()
                                            : w.sizes() == folded.sizes() && at::equal(w, folded));
    if (!matches) {
      report_.push_back(where + ": weight not found on the module; kept frozen");
      return;
    }
    const WeightSpec spec = q_.weight_spec();
    const bool quantized = arrives_quantized(n->input(0)) && !q_.skips(n);  // as convert decides
    const int64_t bits = quantized ? spec.bits : 0;
    const at::Tensor b = tensor_attr(*layer, "bias");
    torch::jit::WithInsertPoint guard(n);
    Value* weight = attr_for(path, "weight", w, false);
    Value* bias = b.defined() ? attr_for(path, "bias", b, false) : none();
    if (bn == nullptr) {
      n->replaceInput(1, graph_->insert(kFakeQuantizeWeight, {weight, bits, spec.per_channel, spec.symmetric}));
      n->replaceInput(2, bias);
      report_.push_back(where + ": trains " + key_of(path, "weight") + (quantized ? ", " + spec.describe() : ", float"));
      return;
    }
    Value* gamma = attr_for(bn->path, "weight", tensor_attr(*bn_mod, "weight"), false);
    Value* beta = attr_for(bn->path, "bias", tensor_attr(*bn_mod, "bias"), false);
    Value* mean = attr_for(bn->path, "running_mean", tensor_attr(*bn_mod, "running_mean"), true);
    Value* var = attr_for(bn->path, "running_var", tensor_attr(*bn_mod, "running_var"), true);
    n->replaceInput(1, graph_->insert(kFoldWeight, {weight, gamma, var, bn->eps, bits, spec.per_channel,
                                                    spec.symmetric, bn_training_}));
    n->replaceInput(2, none());
    double momentum = 0.1;  // nn.BatchNorm's momentum=None (cumulative average) runs as 0.1 here
    if (bn_mod->hasattr("momentum") && bn_mod->attr("momentum").isDouble()) {
      momentum = bn_mod->attr("momentum").toDouble();
    }
    torch::jit::WithInsertPoint after(n->next());
    Value* y = graph_->insert(kBnOutput, {n->output(), bias, gamma, beta, mean, var, bn->eps, momentum, bn_training_});
    n->output()->replaceAllUsesAfterNodeWith(y->node(), y);
    report_.push_back(where + ": trains " + key_of(path, "weight") + " with " + bn->path +
                      " folded (simulated)" + (quantized ? ", " + spec.describe() : ", float"));
  }

  std::string key_of(const std::string& path, const char* leaf) const { return added_.at(path + "." + leaf); }

  Module& qat_;
  const Module& source_;
  const QConfig& q_;
  std::shared_ptr<Graph> graph_;
  Value* self_ = nullptr;
  Value* training_ = nullptr;
  Value* bn_training_ = nullptr;
  std::map<std::string, std::string> added_;  // "<path>.<leaf>" -> attribute name
  std::vector<std::string> report_;
};

// The tensor a value of a QAT graph holds now: a constant, or an attribute of the module.
at::Tensor current_tensor(const Module& m, Value* v) {
  if (auto c = torch::jit::toIValue(v)) return c->isNone() ? at::Tensor() : c->toTensor();
  Node* get = v->node();
  TORCH_CHECK(get->kind() == c10::prim::GetAttr && get->input(0) == v->owningGraph()->inputs().at(0),
              "torchquantx.convert: unexpected QAT graph input ", v->debugName());
  return m.attr(get->s(c10::attr::name)).toTensor();
}

double constant_double(Value* v) { return torch::jit::toIValue(v)->toDouble(); }

at::Tensor fold_scale_factor(const at::Tensor& gamma, const at::Tensor& var, double eps, int64_t dim, int64_t axis) {
  std::vector<int64_t> shape(dim, 1);
  shape[axis] = -1;
  return (gamma * at::rsqrt(var + eps)).reshape(shape);
}

}  // namespace

Module prepare_qat(const Module& model, const QConfig& qconfig, std::string* report) {
  TORCH_CHECK(model.is_training(), "torchquantx.prepare_qat: the model should be in training mode (QAT trains it); "
              "call model.train() first, or use prepare for post-training quantization");
  Module eval_copy = model.clone();
  eval_copy.eval();
  std::unordered_map<const Node*, BnOf> bn_of;
  Module qat = canonicalize(eval_copy, [&](Graph& g) {
    for_each_node(g.block(), [&](Node* n) {
      if (n->kind() != c10::aten::batch_norm) return;
      Node* conv = n->input(0)->node();
      if (conv->kind() != c10::aten::conv1d && conv->kind() != c10::aten::conv2d) return;
      if (conv->output()->uses().size() != 1) return;
      const auto eps = torch::jit::toIValue(n->input(7));
      if (!eps || !eps->isDouble()) return;
      bn_of[conv] = BnOf{layer_of(n), eps->toDouble()};
    });
  });
  // Folding may leave some pairs (e.g. non-constant BatchNorm): keep only convs that lost theirs.
  auto graph = qat.get_method("forward").graph();
  std::unordered_map<const Node*, BnOf> folded;
  for_each_node(graph->block(), [&](Node* n) {
    const auto it = bn_of.find(n);
    if (it == bn_of.end()) return;
    const bool still = n->output()->uses().size() == 1 && n->output()->uses()[0].user->kind() == c10::aten::batch_norm;
    if (!still) folded.emplace(n, it->second);
  });
  insert_observers(qat, qconfig);
  qat.register_attribute(kQConfigAttr, c10::StringType::get(), qconfig.serialize());
  QatBuilder(qat, model, qconfig).run(folded, report);
  qat.train(true);
  return qat;
}

void qat_to_prepared(Module& module) {
  TORCH_CHECK(!module.is_training(), "torchquantx.convert: the QAT model is in training mode; call qat.eval() first "
              "(and usually torchquantx.disable_observer / freeze_bn_stats before the last epochs)");
  c10::AutoGradMode no_grad(false);
  auto graph = module.get_method("forward").graph();
  std::vector<Node*> nodes;
  for_each_node(graph->block(), [&](Node* n) {
    if (n->kind() == kFakeQuantizeWeight || n->kind() == kFoldWeight || n->kind() == kBnOutput) nodes.push_back(n);
  });
  for (Node* n : nodes) {
    torch::jit::WithInsertPoint guard(n);
    if (n->kind() == kBnOutput) {
      // y0 + folded bias, as FoldFrozenConvBatchnorm computes it: the bias joins the conv.
      Node* conv = n->input(0)->node();
      at::Tensor b = current_tensor(module, n->input(1));
      const at::Tensor gamma = current_tensor(module, n->input(2)), beta = current_tensor(module, n->input(3));
      const at::Tensor mean = current_tensor(module, n->input(4)), var = current_tensor(module, n->input(5));
      if (!b.defined()) b = at::zeros_like(mean);
      const at::Tensor b_fold = (b - mean) * at::rsqrt(var + constant_double(n->input(6))) * gamma + beta;
      torch::jit::WithInsertPoint at_conv(conv);
      conv->replaceInput(2, graph->insertConstant(b_fold.clone()));
      n->output()->replaceAllUsesWith(n->input(0));
    } else if (n->kind() == kFoldWeight) {
      const at::Tensor w = current_tensor(module, n->input(0));
      const at::Tensor sf = fold_scale_factor(current_tensor(module, n->input(1)), current_tensor(module, n->input(2)),
                                              constant_double(n->input(3)), w.dim(), 0);
      n->output()->replaceAllUsesWith(graph->insertConstant(w * sf));
    } else {
      // convert quantizes the float weight with the same spec (and the same grid).
      n->output()->replaceAllUsesWith(graph->insertConstant(current_tensor(module, n->input(0)).clone()));
    }
  }
  for (Node* n : nodes) n->destroy();
  // LSQ fake-quantizers: convert reads the learned qparams (rounded as forward_learnable rounds them).
  for_each_node(graph->block(), [&](Node* n) {
    if (n->kind() != c10::prim::CallMethod || n->s(c10::attr::name) != kLearnableForward) return;
    const std::string attr = fake_quantizer_of(n);
    if (attr.empty()) return;
    const c10::IValue fq = module.attr(attr);
    fq.toObject()->type()->getMethod("set_learned_qparams")(
        {fq, current_tensor(module, n->input(3)), current_tensor(module, n->input(4))});
    n->removeInput(4);
    n->removeInput(3);
    n->s_(c10::attr::name, "forward");
  });
  for_each_node(graph->block(), [&](Node* n) {
    if (n->kind() != c10::prim::CallMethod || n->inputs().size() != 3) return;
    Node* get = n->input(0)->node();
    if (get->kind() == c10::prim::GetAttr && get->s(c10::attr::name).rfind(kObserverPrefix, 0) == 0) {
      n->removeInput(2);  // the training flag: convert sees an ordinary observer call
    }
  });
  torch::jit::EliminateDeadCode(graph);
  std::vector<std::string> attrs;
  std::stringstream names(module.attr(kQatAttr).toStringRef());
  for (std::string name; std::getline(names, name, ',');) attrs.push_back(name);
  // Parameters read directly (biases) become constants, as freezing would make them.
  std::vector<Node*> reads;
  for_each_node(graph->block(), [&](Node* n) {
    if (n->kind() == c10::prim::GetAttr && n->input(0) == graph->inputs().at(0) &&
        std::find(attrs.begin(), attrs.end(), n->s(c10::attr::name)) != attrs.end()) {
      reads.push_back(n);
    }
  });
  for (Node* n : reads) {
    torch::jit::WithInsertPoint guard(n);
    n->output()->replaceAllUsesWith(graph->insertConstant(module.attr(n->s(c10::attr::name)).toTensor().clone()));
    n->destroy();
  }
  attrs.push_back(kQatAttr);
  attrs.push_back(kBnFrozenAttr);
  for (const auto& attr : attrs) {
    bool used = false;
    for_each_node(graph->block(), [&](Node* n) {
      used = used || (n->kind() == c10::prim::GetAttr && n->s(c10::attr::name) == attr);
    });
    TORCH_CHECK(!used, "torchquantx.convert: QAT attribute ", attr, " is still read by the graph");
    module._ivalue()->unsafeRemoveAttr(attr);
    module._ivalue()->type()->unsafeRemoveAttribute(attr);
  }
}

void make_learnable(Module& qat) {
  TORCH_CHECK(qat.hasattr(kQatAttr), "torchquantx.prepare_qat(learnable=True): the module was not made by prepare_qat");
  auto graph = qat.get_method("forward").graph();
  Value* self = graph->inputs().at(0);
  std::vector<Node*> calls;
  for_each_node(graph->block(), [&](Node* n) {
    if (fake_quantizer_of(n).empty()) return;
    TORCH_CHECK(n->s(c10::attr::name) == "forward" && n->inputs().size() == 3,
                "torchquantx.prepare_qat(learnable=True): the module's fake-quantizers are already learnable");
    calls.push_back(n);
  });
  std::string added = qat.attr(kQatAttr).toStringRef();
  for (Node* n : calls) {
    const std::string attr = fake_quantizer_of(n);
    const std::string index = attr.substr(std::string(kObserverPrefix).size());
    const std::string scale = kLsqScalePrefix + index, zero_point = kLsqZeroPointPrefix + index;
    if (!qat.hasattr(scale)) {  // shared fake-quantizers (a cat's inputs and output) share parameters
      // Scale 0 marks the parameters unset: the first training batch sets them from the observed range.
      qat.register_parameter(scale, at::zeros({1}).set_requires_grad(true), /*is_buffer=*/false);
      qat.register_parameter(zero_point, at::zeros({1}).set_requires_grad(true), /*is_buffer=*/false);
      added += (added.empty() ? "" : ",") + scale + "," + zero_point;
    }
    torch::jit::WithInsertPoint guard(n);
    n->addInput(graph->insertGetAttr(self, scale));
    n->addInput(graph->insertGetAttr(self, zero_point));
    n->s_(c10::attr::name, kLearnableForward);
  }
  qat.setattr(kQatAttr, added);
}

namespace {

c10::IValue qat_make_learnable_op(c10::IValue module) {
  TORCH_CHECK(module.isObject() && module.toObject()->type()->is_module(),
              "quantx::qat_make_learnable: module should be a QAT TorchScript module (its ._c), got ",
              module.tagKind());
  Module m(module.toObject());
  make_learnable(m);
  return module;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  // In place: the module prepare_qat returned, with LSQ fake-quantizers (make_learnable).
  m.def("qat_make_learnable(Any module) -> Any", qat_make_learnable_op);
}

}  // namespace tqx::passes
