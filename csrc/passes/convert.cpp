// Convert pass: observers -> quantize/dequantize, native lowering, redundant-pair removal.
#include "passes/convert.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/dequantize.h>
#include <ATen/ops/full.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/quantize_per_channel.h>
#include <ATen/ops/quantize_per_tensor.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/runtime/operator.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "kernels/isa.h"
#include "passes/graph_utils.h"
#include "passes/op_registry.h"
#include "passes/weights.h"

namespace tqx::passes {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

struct QParams {
  double scale;
  int64_t zero_point;
};

c10::IValue call_method(const c10::IValue& obj, const std::string& name) {
  auto& fn = obj.toObject()->type()->getMethod(name);
  return fn({obj});
}

// Observer calls inserted by prepare: (call node, attribute name).
std::vector<std::pair<Node*, std::string>> observer_calls(Graph& graph) {
  std::vector<std::pair<Node*, std::string>> calls;
  for_each_node(graph.block(), [&](Node* n) {
    if (n->kind() != c10::prim::CallMethod) return;
    Node* get = n->input(0)->node();
    if (get->kind() != c10::prim::GetAttr) return;
    const std::string name = get->s(c10::attr::name);
    if (name.rfind(kObserverPrefix, 0) == 0) calls.emplace_back(n, name);
  });
  return calls;
}

std::string fmt(double v) {
  std::ostringstream os;
  os << std::setprecision(6) << v;
  return os.str();
}

class Converter {
 public:
  Converter(torch::jit::Module& module, const ConvertOptions& options)
      : module_(module), options_(options), graph_(module.get_method("forward").graph()) {}

  void run(std::string* report) {
    if (options_.target == "quantx") {
      // torch.jit.load without torchquantx fails on the first PackedConv attribute and prints the
      // lines around it: this attribute, declared just before, tells the reader what to do.
      module_.register_attribute("_IMPORT_TORCHQUANTX_BEFORE_TORCH_JIT_LOAD", c10::StringType::get(),
                                 "this model runs torchquantx operators: `import torchquantx` before torch.jit.load");
    }
    remove_stubs();
    replace_observers();
    if (options_.target == "native") warn_if_native_kernels_saturate();
    if (options_.target == "native" || options_.target == "quantx") lower_native();
    remove_redundant_pairs();
    if (options_.target == "quantx") {
      shapes_from_int8();
      torch::jit::EliminateDeadCode(graph_);  // leftover dequantize nodes would count as uses
      fuse_conv_add();
      fuse_relu6();
      fuse_pointwise_depthwise();  // after fuse_relu6: both convolutions' clamps are final
      quantize_inputs_nhwc();
    }
    fake_quantize_remaining_weights();
    torch::jit::EliminateDeadCode(graph_);
    describe_float_ops();
    if (options_.target == "quantx") dequantize_with_own_kernel();  // last: the passes above look for aten::dequantize
    const WeightSpec spec = options_.qconfig.weight_spec();
    if (spec.bits != 8 || !spec.symmetric) {
      report_.insert(report_.begin(), "weights: " + spec.describe() +
                                          (spec.bits == 4 && spec.symmetric ? " (values in [-8, 7], run as int8)"
                                           : spec.runs_int8()               ? ""
                                                                            : " (simulated: float kernels on "
                                                                              "fake-quantized weights)"));
    }
    if (report) {
      if (!saturation_warning_.empty()) *report += "warning: " + saturation_warning_ + "\n";
      for (const auto& line : report_) *report += line + "\n";
    }
  }

 private:
  // The region markers have done their job in prepare; the result must not depend on quantx.
  void remove_stubs() {
    const auto q = c10::Symbol::fromQualString("quantx::quant_stub");
    const auto dq = c10::Symbol::fromQualString("quantx::dequant_stub");
    std::vector<Node*> stubs;
    for_each_node(graph_->block(), [&](Node* n) {
      if (n->kind() == q || n->kind() == dq) stubs.push_back(n);
    });
    for (Node* n : stubs) {
      n->output()->replaceAllUsesWith(n->input(0));
      n->destroy();
    }
  }

  // ---- observers -> quantize / dequantize ------------------------------------------------
  void replace_observers() {
    auto calls = observer_calls(*graph_);
    drop_non_float_observers(calls);
    drop_unreached_observers(calls);
    std::vector<std::string> empty, nonfinite;
    for (const auto& [call, attr] : calls) {
      const c10::IValue obs = module_.attr(attr);
      if (call_method(obs, "batches").toInt() == 0) empty.push_back(describe_value(call->input(1)));
      const int64_t bad = call_method(obs, "nonfinite_count").toInt();
      if (bad > 0) nonfinite.push_back(describe_value(call->input(1)) + ": " + std::to_string(bad) + " values");
    }
    if (!empty.empty()) {
      std::string list;
      for (const auto& e : empty) list += "\n  " + e;
      TORCH_CHECK(false, "torchquantx.convert: ", empty.size(), " of ", calls.size(),
                  " observers saw no data; run calibration first (torchquantx.calibrate(prepared, data)) or check "
                  "that the calibration data reaches these values:", list);
    }
    if (!nonfinite.empty()) {
      std::string list;
      for (const auto& e : nonfinite) list += "\n  " + e;
      TORCH_CHECK(false, "torchquantx.convert: calibration produced NaN or Inf values (left out of the ranges) at:",
                  list, "\nfix the model or the data, or recalibrate");
    }
    for (const auto& [call, attr] : calls) {
      const c10::IValue obs = module_.attr(attr);
      const auto qp = call_method(obs, "calculate_qparams").toTuple();
      const double scale = qp->elements()[0].toTensor().item<float>();
      const int64_t zp = qp->elements()[1].toTensor().item<int64_t>();
      Value* v = call->input(1);
      torch::jit::WithInsertPoint guard(call);
      Value* q = graph_->insert(c10::aten::quantize_per_tensor,
                                {v, scale, zp, static_cast<int64_t>(options_.qconfig.activation_dtype)});
      Value* dq = graph_->insert(c10::aten::dequantize, {q});
      call->output()->replaceAllUsesWith(dq);
      Node* get = call->input(0)->node();
      call->destroy();
      if (!get->hasUses()) get->destroy();
      qparams_[q] = {scale, zp};
    }
    for (const auto& [call, attr] : calls) {
      (void)call;
      remove_observer_attr(attr);
    }
  }

  // Observers shared by several values (a cat's inputs and output) are removed once, and only
  // when no call to them is left in the graph.
  void remove_observer_attr(const std::string& attr) {
    if (!module_._ivalue()->type()->hasAttribute(attr)) return;
    bool used = false;
    for_each_node(graph_->block(), [&](Node* n) {
      used = used || (n->kind() == c10::prim::GetAttr && n->s(c10::attr::name) == attr && n->hasUses());
    });
    if (used) return;
    module_._ivalue()->unsafeRemoveAttr(attr);  // needs the type's slot: before the type forgets it
    module_._ivalue()->type()->unsafeRemoveAttribute(attr);
  }

  // Values that turned out to be integer tensors during calibration are not quantized.
  void drop_non_float_observers(std::vector<std::pair<Node*, std::string>>& calls) {
    std::vector<std::pair<Node*, std::string>> kept;
    for (const auto& [call, attr] : calls) {
      const c10::IValue obs = module_.attr(attr);
      if (call_method(obs, "batches").toInt() == 0 && call_method(obs, "nonfloat_count").toInt() > 0) {
        call->output()->replaceAllUsesWith(call->input(1));
        Node* get = call->input(0)->node();
        call->destroy();
        if (!get->hasUses()) get->destroy();
        remove_observer_attr(attr);
      } else {
        kept.emplace_back(call, attr);
      }
    }
    calls.swap(kept);
  }

  // Observers inside if/loop bodies that no calibration batch entered (while the rest of the model
  // saw data) watch code that calibration cannot reach - e.g. nn.MultiheadAttention's slow path,
  // which frozen weights never take. Those regions stay float; observers at the top level of the
  // graph that saw nothing still fail (uncalibrated model, or data not reaching them).
  void drop_unreached_observers(std::vector<std::pair<Node*, std::string>>& calls) {
    bool any_data = false;
    for (const auto& [call, attr] : calls) {
      (void)call;
      if (call_method(module_.attr(attr), "batches").toInt() > 0) any_data = true;
    }
    if (!any_data) return;
    std::vector<std::pair<Node*, std::string>> kept;
    std::string unreached;
    for (const auto& [call, attr] : calls) {
      if (call->owningBlock() != graph_->block() && call_method(module_.attr(attr), "batches").toInt() == 0) {
        unreached += "\n  " + describe_value(call->input(1));
        unreached_blocks_.insert(call->owningBlock());
        call->output()->replaceAllUsesWith(call->input(1));
        Node* get = call->input(0)->node();
        call->destroy();
        if (!get->hasUses()) get->destroy();
        remove_observer_attr(attr);
      } else {
        kept.emplace_back(call, attr);
      }
    }
    calls.swap(kept);
    if (!unreached.empty() && options_.warn_unreached) {
      TORCH_WARN("torchquantx.convert: no calibration batch reached these values inside if/loop branches; "
                 "their branches stay in float (calibrate with data that takes them to quantize them):",
                 unreached);
    }
  }

  bool in_unreached_block(const Node* n) const {
    for (const torch::jit::Block* b = n->owningBlock(); b != nullptr;
         b = b->owningNode() ? b->owningNode()->owningBlock() : nullptr) {
      if (unreached_blocks_.count(b)) return true;
    }
    return false;
  }

  // ---- native lowering ----------------------------------------------------------------------
  static Value* quantized_source(Value* v) {
    return v->node()->kind() == c10::aten::dequantize ? v->node()->input(0) : nullptr;
  }

  static Node* single_quantize_user(Value* v) {
    if (v->uses().size() != 1) return nullptr;
    Node* u = v->uses()[0].user;
    return u->kind() == c10::aten::quantize_per_tensor ? u : nullptr;
  }

  QuantizedWeight quantize_weight(const at::Tensor& w) const {
    return tqx::passes::quantize_weight(w, options_.qconfig.weight_spec());
  }

  Value* packed_attr(const c10::IValue& packed) { return add_packed_attr(module_, *graph_, packed); }

  // PyTorch's oneDNN int8 kernels on x86 CPUs without VNNI add pairs of uint8 x int8 products in
  // saturating int16 (vpmaddubsw): with 8-bit activations the sums can clip (7-bit ones cannot).
  void warn_if_native_kernels_saturate() {
    const QConfig& q = options_.qconfig;
    if (q.engine != "onednn" || q.activation_dtype != c10::kQUInt8 || q.activation_reduce_range) return;
    using kernels::Isa;
    const Isa isa = kernels::detected_isa();
    if (isa != Isa::kAVX2 && isa != Isa::kAVX512) return;
    saturation_warning_ = std::string("target=\"native\" runs PyTorch's int8 kernels, which on this CPU (") +
                          kernels::isa_name(isa) +
                          ", no VNNI) add pairs of products in saturating int16: with 8-bit activations (this "
                          "qconfig) outputs can be off by many steps. The \"x86\" preset (7-bit activations) or "
                          "target=\"quantx\" (exact on every CPU) avoid it.";
    TORCH_WARN("torchquantx.convert: ", saturation_warning_);
  }

  void lower_native() {
    std::vector<Node*> nodes;
    for_each_node(graph_->block(), [&](Node* n) { nodes.push_back(n); });
    const EngineGuard engine(options_.qconfig.engine);
    {
      for (Node* n : nodes) {
        if (destroyed_.count(n)) continue;
        if (options_.qconfig.skips(n)) continue;
        const OpRule* rule = find_rule(n);
        if (rule == nullptr) continue;
        if (rule->kind == QuantKind::kInt8) {
          lower_int8(n, *rule);
        } else if (rule->kind != QuantKind::kFloat) {
          lower_same(n, *rule);
        }
      }
    }
  }

  void lower_int8(Node* n, const OpRule& rule) {
    // Activation inputs must arrive dequantized, the output must leave through one quantize.
    std::vector<Value*> qin;
    Value* list = nullptr;
    for (int i : rule.activations) {
      Value* v = n->input(i);
      if (rule.native == NativeLowering::kCat) {
        list = v;
        if (v->node()->kind() != c10::prim::ListConstruct) return;
        for (Value* e : v->node()->inputs()) {
          Value* q = quantized_source(e);
          if (!q) return;
          qin.push_back(q);
        }
      } else {
        Value* q = quantized_source(v);
        if (!q) return;
        qin.push_back(q);
      }
    }
    Node* relu = nullptr;
    Value* out = n->output();
    if (rule.fuses_relu && rule.native_relu_op && out->uses().size() == 1 &&
        is_fusable_relu(out->uses()[0].user)) {
      relu = out->uses()[0].user;
      out = relu->output();
    }
    Node* quant = single_quantize_user(out);
    if (!quant) return;
    const double scale = torch::jit::toIValue(quant->input(1))->toDouble();
    const int64_t zp = torch::jit::toIValue(quant->input(2))->toInt();
    // Target quantx: torchquantx's kernels where the registry names one (relu as a flag).
    const bool own = options_.target == "quantx" && rule.quantx_op != nullptr;
    const char* op_name = own ? rule.quantx_op : relu ? rule.native_relu_op : rule.native_op;

    torch::jit::WithInsertPoint guard(quant);
    std::vector<Value*> inputs;
    switch (rule.native) {
      case NativeLowering::kConv:
      case NativeLowering::kLinear: {
        const auto w = torch::jit::toIValue(n->input(rule.weight));
        const auto b = torch::jit::toIValue(n->input(rule.weight + 1));
        if (!w || !b || !(b->isNone() || b->isTensor())) return;
        std::vector<c10::IValue> geometry;  // stride, padding, dilation, groups
        for (size_t i = rule.weight + 2; i < n->inputs().size(); ++i) {
          auto a = torch::jit::toIValue(n->input(i));
          if (!a || !(a->isIntList() || a->isInt())) return;  // e.g. padding="same"
          geometry.push_back(*a);
        }
        if (rule.native == NativeLowering::kConv && geometry.size() != 4) return;
        // 16-bit or affine weights: no int8 kernel takes them; the layer stays float between its
        // int8 activations, on fake-quantized weights (fake_quantize_remaining_weights).
        if (!options_.qconfig.weight_spec().runs_int8()) return;
        const QuantizedWeight qw = quantize_weight(w->toTensor());
        const at::Tensor wq = qw.to_qint8();
        c10::IValue packed;
        if (own) {
          const bool conv = rule.native == NativeLowering::kConv;
          std::vector<c10::IValue> args = {wq.int_repr(), qw.channel_scales(), *b};
          args.insert(args.end(), geometry.begin(), geometry.end());
          packed = call_op(conv ? "quantx::conv_prepack" : "quantx::linear_prepack", args);
        } else if (rule.native == NativeLowering::kLinear) {
          packed = call_op("quantized::linear_prepack", {wq, *b});
        } else {
          std::vector<c10::IValue> args = {wq, *b};
          args.insert(args.end(), geometry.begin(), geometry.end());
          const bool is1d = n->kind() == c10::aten::conv1d;
          packed = call_op(is1d ? "quantized::conv1d_prepack" : "quantized::conv2d_prepack", args);
        }
        inputs = {qin[0], packed_attr(packed)};
        if (own && rule.native == NativeLowering::kConv && w->toTensor().dim() == 4) {
          const at::Tensor wt = w->toTensor();
          const auto stride = geometry[0].toIntVector(), padding = geometry[1].toIntVector();
          conv_shapes_[inputs[1]] = {wt.size(0), wt.size(1), wt.size(2), wt.size(3), geometry[3].toInt(),
                                     stride.size() == 2 && stride[0] == 1 && stride[1] == 1,
                                     padding.size() == 2 && padding[0] == 0 && padding[1] == 0};
        }
        break;
      }
      case NativeLowering::kBinary:
        inputs = {qin[0], qin[1]};
        break;
      case NativeLowering::kCat: {
        Node* lc = graph_->createList(c10::TensorType::get(), qin);
        graph_->insertNode(lc);
        inputs = {lc->output(), n->input(1)};
        break;
      }
      case NativeLowering::kQParamsArg:
        inputs = {qin[0]};
        break;
      case NativeLowering::kSameOp:
        return;
    }
    inputs.push_back(graph_->insertConstant(scale));
    inputs.push_back(graph_->insertConstant(zp));
    if (own && rule.fuses_relu) inputs.push_back(graph_->insertConstant(relu != nullptr));
    if (own && (rule.native == NativeLowering::kConv || rule.native == NativeLowering::kLinear)) {
      inputs.push_back(graph_->insertConstant(int64_t{255}));  // qmax: fuse_relu6 may lower it
    }
    Node* lowered = graph_->create(c10::Symbol::fromQualString(op_name), inputs);
    lowered->output()->setType(c10::TensorType::get());
    lowered->copyMetadata(n);  // the layer (scope) the op came from, for reports
    graph_->insertNode(lowered);
    qparams_[lowered->output()] = {scale, zp};
    report_.push_back(describe(n) + (relu ? " + aten::relu" : "") + " -> " + op_name + (own && relu ? "(relu)" : "") +
                      "  out(scale=" + fmt(scale) +
                      ", zero_point=" + std::to_string(zp) + ")");
    quant->output()->replaceAllUsesWith(lowered->output());
    destroy(quant);
    if (relu) destroy(relu);
    destroy(n);
    if (list && !list->hasUses()) destroy(list->node());
  }

  // The registry's quantx op for a same/fixed-qparams node, when its schema takes the node's
  // arguments (plus the fixed output qparams): e.g. aten::mean.dim, not aten::mean(Tensor, dtype).
  static bool quantx_op_fits(const Node* n, const OpRule& rule) {
    const auto ops = torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString(rule.quantx_op));
    if (ops.size() != 1) return false;
    const auto& args = ops[0]->schema().arguments();
    const size_t extra = rule.kind == QuantKind::kFixedQParams ? 2 : 0;
    if (args.size() != n->inputs().size() + extra) return false;
    for (size_t i = 1; i < n->inputs().size(); ++i) {
      if (!n->input(i)->type()->isSubtypeOf(*args[i].type())) return false;
    }
    return true;
  }

  void lower_same(Node* n, const OpRule& rule) {
    Value* q = quantized_source(n->input(0));
    if (!q) return;
    torch::jit::WithInsertPoint guard(n);
    Node* clone = graph_->createClone(n, [&](Value* v) { return v == n->input(0) ? q : v; });
    const bool own = options_.target == "quantx" && rule.quantx_op != nullptr && quantx_op_fits(n, rule);
    if (own) {  // torchquantx's kernel, same arguments (fixed-qparams ops: and their output qparams)
      std::vector<Value*> inputs(clone->inputs().begin(), clone->inputs().end());
      if (rule.kind == QuantKind::kFixedQParams) {
        inputs.push_back(graph_->insertConstant(rule.fixed_scale));
        inputs.push_back(graph_->insertConstant(rule.fixed_zero_point));
      }
      Node* other = graph_->create(c10::Symbol::fromQualString(rule.quantx_op), inputs);
      other->output()->setType(c10::TensorType::get());
      other->copyMetadata(n);
      clone->destroy();
      clone = other;
    } else if (rule.native_op != nullptr) {  // a stand-in that accepts what int8 producers return
      Node* other = graph_->create(c10::Symbol::fromQualString(rule.native_op), clone->inputs());
      other->output()->setType(n->output()->type());
      other->copyMetadata(n);
      clone->destroy();
      clone = other;
    }
    graph_->insertNode(clone);
    int8_clones_.insert(clone);
    Value* dq = graph_->insert(c10::aten::dequantize, {clone->output()});
    if (rule.kind == QuantKind::kFixedQParams) {
      qparams_[clone->output()] = {rule.fixed_scale, rule.fixed_zero_point};
    } else if (qparams_.count(q)) {
      qparams_[clone->output()] = qparams_[q];
    }
    report_.push_back(describe(n) + " -> " + (own ? std::string(rule.quantx_op) + " " : std::string("int8 ")) + "(" +
                      (rule.kind == QuantKind::kFixedQParams ? "fixed qparams" : "input's qparams") + ")");
    n->output()->replaceAllUsesWith(dq);
    destroy(n);
  }

  // aten::size / aten::dim of a dequantized int8 value (shape checks in scripted code, e.g.
  // torchvision's SE block) read the int8 tensor instead: the dequantize then often goes away.
  void shapes_from_int8() {
    std::vector<Node*> users;
    for_each_node(graph_->block(), [&](Node* n) {
      if ((n->kind() == c10::aten::size || n->kind() == c10::aten::dim) &&
          n->input(0)->node()->kind() == c10::aten::dequantize) {
        users.push_back(n);
      }
    });
    for (Node* n : users) n->replaceInput(0, n->input(0)->node()->input(0));
  }

  // ---- cleanup --------------------------------------------------------------------------------
  void remove_redundant_pairs() {
    const std::vector<Node*> quants = nodes_of_kind(graph_->block(), c10::aten::quantize_per_tensor);
    for (Node* quant : quants) {
      Value* q = quantized_source(quant->input(0));
      if (!q || !qparams_.count(q)) continue;
      const auto s = torch::jit::toIValue(quant->input(1));
      const auto z = torch::jit::toIValue(quant->input(2));
      if (!s || !z) continue;
      const QParams& have = qparams_[q];
      if (have.scale == s->toDouble() && have.zero_point == z->toInt()) {
        quant->output()->replaceAllUsesWith(q);
        quant->destroy();
      }
    }
  }

  // quantx::add(quantx::conv2d(x, w, ...), r) [+relu] -> quantx::conv2d_add(x, w, r): the residual
  // joins the convolution's epilogue, so the conv output is never rounded to its own qparams nor
  // written out and read back. Needs the conv output to feed only this add, and no ReLU between.
  void fuse_conv_add() {
    const auto add_sym = c10::Symbol::fromQualString("quantx::add");
    const auto conv_sym = c10::Symbol::fromQualString("quantx::conv2d");
    const auto fused_sym = c10::Symbol::fromQualString("quantx::conv2d_add");
    const std::vector<Node*> adds = nodes_of_kind(graph_->block(), add_sym);
    for (Node* add : adds) {
      for (size_t i = 0; i < 2; ++i) {
        Value* c = add->input(i);
        Value* other = add->input(1 - i);
        Node* conv = c->node();
        if (conv->kind() != conv_sym || c->uses().size() != 1 || other == c ||
            conv->owningBlock() != add->owningBlock()) {
          continue;
        }
        const auto conv_relu = torch::jit::toIValue(conv->input(4));
        if (!conv_relu || conv_relu->toBool()) continue;
        torch::jit::WithInsertPoint guard(add);
        Node* fused = graph_->create(fused_sym, {conv->input(0), conv->input(1), other, add->input(2), add->input(3),
                                                 add->input(4)});
        fused->output()->setType(c10::TensorType::get());
        fused->copyMetadata(add);
        graph_->insertNode(fused);
        const auto relu = torch::jit::toIValue(add->input(4));
        report_.push_back(std::string(layer_of(add).empty() ? "<top>" : layer_of(add)) +
                          "  quantx::conv2d + quantx::add -> quantx::conv2d_add" +
                          (relu && relu->toBool() ? "(relu)" : "") + "  (one rounding)");
        if (qparams_.count(add->output())) qparams_[fused->output()] = qparams_[add->output()];
        add->output()->replaceAllUsesWith(fused->output());
        destroy(add);
        destroy(conv);
        break;
      }
    }
  }

  // quantx::conv2d(quantx::conv2d(x, pointwise, ...), depthwise, ...) -> quantx::conv2d_pair(x,
  // pointwise, ..., depthwise, ...): mobilenet-style blocks then never write their widened tensor
  // out and read it back (Note [Conv pairs] in kernels/conv.cpp); the same bytes. The first must be
  // 1x1, stride 1, no padding, one group, and feed only the second; the second depthwise.
  void fuse_pointwise_depthwise() {
    const auto conv_sym = c10::Symbol::fromQualString("quantx::conv2d");
    const auto pair_sym = c10::Symbol::fromQualString("quantx::conv2d_pair");
    const std::vector<Node*> seconds = nodes_of_kind(graph_->block(), conv_sym);
    for (Node* second : seconds) {
      if (destroyed_.count(second)) continue;  // the first of a pair made earlier in this loop
      Node* first = second->input(0)->node();
      if (first->kind() != conv_sym || destroyed_.count(first) || second->input(0)->uses().size() != 1 ||
          first->owningBlock() != second->owningBlock() || first->inputs().size() != 6 ||
          second->inputs().size() != 6) {
        continue;
      }
      const auto f = conv_shapes_.find(first->input(1)), d = conv_shapes_.find(second->input(1));
      if (f == conv_shapes_.end() || d == conv_shapes_.end()) continue;
      const ConvWeightShape& a = f->second;
      const ConvWeightShape& b = d->second;
      const bool pointwise = a.kernel_h == 1 && a.kernel_w == 1 && a.unit_stride && a.no_padding && a.groups == 1;
      const bool depthwise = b.groups == a.out_c && b.in_c_per_group == 1 && b.out_c == a.out_c;
      if (!pointwise || !depthwise) continue;
      torch::jit::WithInsertPoint guard(second);
      std::vector<Value*> inputs(first->inputs().begin(), first->inputs().end());
      inputs.insert(inputs.end(), second->inputs().begin() + 1, second->inputs().end());
      Node* pair = graph_->create(pair_sym, inputs);
      pair->output()->setType(c10::TensorType::get());
      pair->copyMetadata(second);
      graph_->insertNode(pair);
      report_.push_back(std::string(layer_of(first).empty() ? "<top>" : layer_of(first)) + " + " +
                        (layer_of(second).empty() ? "<top>" : layer_of(second)) +
                        "  quantx::conv2d (1x1) + quantx::conv2d (depthwise) -> quantx::conv2d_pair"
                        "  (the 1x1 output stays in cache)");
      if (qparams_.count(second->output())) qparams_[pair->output()] = qparams_[second->output()];
      second->output()->replaceAllUsesWith(pair->output());
      destroy(second);
      destroy(first);
    }
  }

  // quantx::conv2d / linear followed by ReLU6 (aten::hardtanh(x, 0, 6) or aten::relu6) on the same
  // qparams: ReLU6 on an int8 tensor clamps its integers to [zp, q(6)], with q(6) rounded as
  // PyTorch's quantize_val does (float reciprocal of the scale, round half to even, then clamped to
  // [0, 255]). The kernel's epilogue clamps to the same bounds (relu flag and qmax), bit for bit.
  void fuse_relu6() {
    const std::unordered_set<c10::Symbol> producers = {c10::Symbol::fromQualString("quantx::conv2d"),
                                                       c10::Symbol::fromQualString("quantx::linear")};
    std::vector<Node*> clamps;
    for_each_node(graph_->block(), [&](Node* n) {
      if (n->kind() == c10::aten::hardtanh || n->kind() == c10::aten::relu6) clamps.push_back(n);
    });
    for (Node* n : clamps) {
      Value* c = n->input(0);
      Node* op = c->node();
      if (!producers.count(op->kind()) || c->uses().size() != 1 || op->inputs().size() < 6) continue;
      if (n->kind() == c10::aten::hardtanh) {
        const auto lo = torch::jit::toIValue(n->input(1)), hi = torch::jit::toIValue(n->input(2));
        if (!lo || !hi || !lo->isDouble() || !hi->isDouble() || lo->toDouble() != 0.0 || hi->toDouble() != 6.0) {
          continue;
        }
      }
      const auto scale = torch::jit::toIValue(op->input(2)), zp = torch::jit::toIValue(op->input(3));
      const auto relu = torch::jit::toIValue(op->input(4)), qmax = torch::jit::toIValue(op->input(5));
      if (!scale || !zp || !relu || !qmax || relu->toBool() || qmax->toInt() != 255) continue;
      const float inv_scale = 1.0f / static_cast<float>(scale->toDouble());
      const int64_t q6 =
          std::min<int64_t>(255, std::max<int64_t>(0, zp->toInt() + static_cast<int64_t>(std::nearbyint(6.0f * inv_scale))));
      torch::jit::WithInsertPoint guard(op);
      op->replaceInput(4, graph_->insertConstant(true));
      op->replaceInput(5, graph_->insertConstant(q6));
      report_.push_back(describe(op) + " + " + n->kind().toQualString() + " -> " + op->kind().toQualString() +
                        "(relu)  (ReLU6 as the epilogue clamp [" + std::to_string(zp->toInt()) + ", " +
                        std::to_string(q6) + "])");
      n->output()->replaceAllUsesWith(c);
      destroy(n);
    }
  }

  // A float -> quint8 quantize that feeds only quantx operators becomes quantx::quantize_nhwc: our
  // quantize kernel, and the channels-last layout our convolutions read (the other quantx
  // operators take any layout). This covers the model input and the way back into int8 after a
  // float fallback (a skipped layer, an unsupported op).
  void quantize_inputs_nhwc() {
    const auto nhwc = c10::Symbol::fromQualString("quantx::quantize_nhwc");
    const auto quantx_ns = c10::Symbol::fromQualString("namespaces::quantx");
    std::vector<Node*> quants;
    for_each_node(graph_->block(), [&](Node* n) {
      if (n->kind() != c10::aten::quantize_per_tensor || !n->output()->hasUses()) return;
      const auto dtype = torch::jit::toIValue(n->input(3));
      if (!dtype || !dtype->isInt() || dtype->toInt() != static_cast<int64_t>(c10::kQUInt8)) return;
      for (const auto& u : n->output()->uses()) {
        // aten::dequantize becomes quantx::dequantize at the end (dequantize_with_own_kernel).
        if (u.user->kind().ns() != quantx_ns && u.user->kind() != c10::aten::dequantize) return;
      }
      quants.push_back(n);
    });
    for (Node* q : quants) {
      torch::jit::WithInsertPoint guard(q);
      Node* r = graph_->create(nhwc, {q->input(0), q->input(1), q->input(2)});
      r->output()->setType(c10::TensorType::get());
      r->copyMetadata(q);
      graph_->insertNode(r);
      if (qparams_.count(q->output())) qparams_[r->output()] = qparams_[q->output()];
      q->output()->replaceAllUsesWith(r->output());
      destroy(q);
    }
  }

  // int8 -> float at the model output and in front of float fallbacks: quantx::dequantize (our
  // kernel, bit-exact with aten::dequantize, several times faster; it defers to aten::dequantize
  // for anything but a per-tensor quint8 tensor).
  void dequantize_with_own_kernel() {
    const auto own = c10::Symbol::fromQualString("quantx::dequantize");
    std::vector<Node*> dqs;
    for_each_node(graph_->block(), [&](Node* n) {
      if (n->kind() == c10::aten::dequantize && n->inputs().size() == 1 && n->output()->hasUses()) dqs.push_back(n);
    });
    for (Node* dq : dqs) {
      torch::jit::WithInsertPoint guard(dq);
      Node* r = graph_->create(own, {dq->input(0)});
      r->output()->setType(dq->output()->type());
      r->copyMetadata(dq);
      graph_->insertNode(r);
      dq->output()->replaceAllUsesWith(r->output());
      destroy(dq);
    }
  }

  // True when v is a dequantized value, directly or through ops that keep their input's qparams
  // (in the reference target those stay in float between the dequantize and the weight op).
  static bool comes_quantized(Value* v) {
    for (Node* n = v->node();; n = n->input(0)->node()) {
      if (n->kind() == c10::aten::dequantize) return true;
      const OpRule* rule = find_rule(n);
      if (!rule || (rule->kind != QuantKind::kSameQParams && rule->kind != QuantKind::kFixedQParams)) return false;
    }
  }

  // Weight ops that stayed in float still compute with weights the spec can represent.
  void fake_quantize_remaining_weights() {
    std::vector<Node*> todo;
    for_each_node(graph_->block(), [&](Node* n) {
      const OpRule* rule = find_rule(n);
      if (rule && rule->weight >= 0 && comes_quantized(n->input(rule->activations[0])) &&
          !options_.qconfig.skips(n)) {
        todo.push_back(n);
      }
    });
    for (Node* n : todo) {
      const OpRule* rule = find_rule(n);
      const at::Tensor w = torch::jit::toIValue(n->input(rule->weight))->toTensor();
      torch::jit::WithInsertPoint guard(n);
      Value* c = graph_->insertConstant(quantize_weight(w).dequantize());
      n->replaceInput(rule->weight, c);
      fake_quantized_.insert(n);
      const WeightSpec spec = options_.qconfig.weight_spec();
      if (spec.bits == 16) {
        report_.push_back(describe(n) + " -> float kernel on int16-rounded weights, int8 activations (W16A8 "
                          "simulation: no int16 kernels)");
      } else if (!spec.symmetric) {
        report_.push_back(describe(n) + " -> float kernel on affine int" + std::to_string(spec.bits) +
                          "-rounded weights (no int8 kernel takes affine weights)");
      } else {
        report_.push_back(describe(n) + " -> float kernel on int" + std::to_string(spec.bits) +
                          "-rounded weights (its form has no int8 lowering)");
      }
    }
  }

  void describe_float_ops() {
    for_each_node(graph_->block(), [&](Node* n) {
      if (n->outputs().empty() || !n->outputs()[0]->type()->cast<c10::TensorType>()) return;  // e.g. MHA: 2 outputs
      const auto k = n->kind();
      if (k == c10::prim::Constant || k == c10::prim::GetAttr || k == c10::aten::dequantize ||
          k == c10::aten::quantize_per_tensor || k.is_prim() || k.ns().toUnqualString() == std::string("quantized") ||
          k.ns().toUnqualString() == std::string("quantx") || int8_clones_.count(n) ||
          (fake_quantized_.count(n) && !in_unreached_block(n))) {
        return;
      }
      const char* why = options_.qconfig.skips(n)            ? "skipped by request"
                        : in_unreached_block(n)          ? "its branch never ran during calibration"
                        : find_rule(n) != nullptr        ? "its inputs are not quantized here"
                                                         : "not in the op registry; runs in float with "
                                                           "dequantize/quantize around it";
      report_.push_back(describe(n) + " -> float (" + why + ")");
    });
  }

  std::string describe(const Node* n) const {
    const std::string layer = layer_of(n);
    return (layer.empty() ? std::string("<top>") : layer) + "  " + n->kind().toQualString();
  }

  void destroy(Node* n) {
    destroyed_.insert(n);
    n->destroy();
  }

  torch::jit::Module& module_;
  const ConvertOptions& options_;
  std::shared_ptr<Graph> graph_;
  std::unordered_map<Value*, QParams> qparams_;
  // The weights of each convolution lowered to a quantx op, by the packed-weights value it reads.
  struct ConvWeightShape {
    int64_t out_c, in_c_per_group, kernel_h, kernel_w, groups;
    bool unit_stride, no_padding;
  };
  std::unordered_map<Value*, ConvWeightShape> conv_shapes_;
  std::unordered_set<Node*> destroyed_;
  std::unordered_set<Node*> int8_clones_;
  std::unordered_set<Node*> fake_quantized_;  // float weight ops already reported
  std::unordered_set<const torch::jit::Block*> unreached_blocks_;  // if/loop bodies calibration never entered  // same-qparams ops now running on quantized tensors
  std::vector<std::string> report_;
  std::string saturation_warning_;  // set by warn_if_native_kernels_saturate
};

}  // namespace

void convert_module(torch::jit::Module& module, const ConvertOptions& options, std::string* report) {
  TORCH_CHECK(options.target == "native" || options.target == "quantx" || options.target == "reference",
              "torchquantx.convert: target should be 'native' (PyTorch's quantized operators), 'quantx' "
              "(torchquantx's kernels) or 'reference' (float ops between quantize/dequantize), got '",
              options.target, "'");
  Converter(module, options).run(report);
}

}  // namespace tqx::passes
