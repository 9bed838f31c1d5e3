// Annotation from the op registry and observer insertion.
#include "passes/insert_observers.h"

#include <torch/csrc/jit/ir/ir.h>

#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kernels/qparams.h"
#include "observers/factory.h"
#include "passes/graph_utils.h"
#include "passes/op_registry.h"

namespace tqx::passes {
namespace {

using torch::jit::Node;
using torch::jit::Value;

// The single relu consuming `v`, if that is its only use.
Node* single_relu_user(Value* v) {
  if (v->uses().size() != 1) return nullptr;
  Node* user = v->uses()[0].user;
  return is_fusable_relu(user) ? user : nullptr;
}

const c10::Symbol kQuantStub = c10::Symbol::fromQualString("quantx::quant_stub");
const c10::Symbol kDequantStub = c10::Symbol::fromQualString("quantx::dequant_stub");

// Eager-style regions: with stubs in the model, only values flowing from a quant_stub (and not
// yet through a dequant_stub) are quantized. Without stubs, everything is.
struct Regions {
  bool active = false;
  std::unordered_set<const Value*> inside;

  explicit Regions(torch::jit::Block* top) {
    for_each_node(top, [&](Node* n) {
      if (n->kind() == kQuantStub) active = true;
    });
    if (!active) return;
    for_each_node(top, [&](Node* n) {
      if (n->kind() == kDequantStub) return;
      bool in = n->kind() == kQuantStub;
      for (const Value* v : n->inputs()) in = in || inside.count(v);
      if (in) {
        for (const Value* v : n->outputs()) inside.insert(v);
      }
    });
  }
  bool allows(const Node* n) const {
    if (!active) return true;
    for (const Value* v : n->inputs()) {
      if (inside.count(v)) return true;
    }
    return false;
  }
};

struct Annotator {
  const QConfig& qconfig;
  const Regions& regions;
  std::unordered_set<Value*> quantized;  // values that will be int8
  std::vector<Value*> to_observe;
  std::unordered_set<Value*> observed;
  std::unordered_map<Value*, Value*> qparams_from;  // same-qparams outputs -> their input
  std::unordered_map<Value*, Value*> group;          // union-find over values sharing one observer

  void observe(Value* v) {
    if (quantized.insert(v).second) {
      to_observe.push_back(v);
      observed.insert(v);
    }
  }

  // The observed value whose qparams v carries (through same-qparams ops), or nullptr.
  Value* qparams_source(Value* v) const {
    for (auto it = qparams_from.find(v); it != qparams_from.end(); it = qparams_from.find(v)) v = it->second;
    return observed.count(v) ? v : nullptr;
  }

  Value* root(Value* v) {
    auto it = group.find(v);
    if (it == group.end() || it->second == v) return v;
    return it->second = root(it->second);
  }

  // A cat's inputs and output share one observer (as PyTorch FX does), so the cat copies bytes
  // and never requantizes: the range is the union of all of them.
  void share(const std::vector<Value*>& values) {
    Value* first = nullptr;
    for (Value* v : values) {
      Value* src = qparams_source(v);
      if (src == nullptr) continue;  // e.g. a fixed-qparams sigmoid: the cat requantizes it
      if (first == nullptr) {
        first = root(src);
      } else {
        group[root(src)] = first;
      }
    }
  }

  void visit(Node* n) {
    if (!regions.allows(n)) return;
    if (qconfig.skips(n)) return;
    const OpRule* rule = find_rule(n);
    if (rule == nullptr) return;
    switch (rule->kind) {
      case QuantKind::kInt8: {
        for (int i : rule->activations) {
          Value* v = n->input(i);
          if (rule->native == NativeLowering::kCat) {
            if (v->node()->kind() != c10::prim::ListConstruct) return;  // unknown list: stays float
            for (Value* e : v->node()->inputs()) observe(e);
          } else {
            observe(v);
          }
        }
        Node* relu = rule->fuses_relu ? single_relu_user(n->output()) : nullptr;
        if (relu != nullptr) {
          quantized.insert(n->output());
          observe(relu->output());
        } else {
          observe(n->output());
        }
        if (rule->native == NativeLowering::kCat) {
          std::vector<Value*> members(n->input(rule->activations[0])->node()->inputs().begin(),
                                      n->input(rule->activations[0])->node()->inputs().end());
          members.push_back(n->output());
          share(members);
        }
        break;
      }
      case QuantKind::kSameQParams:
        if (quantized.count(n->input(0))) {
          quantized.insert(n->output());
          qparams_from[n->output()] = n->input(0);
        }
        break;
      case QuantKind::kFixedQParams:
        if (quantized.count(n->input(0))) quantized.insert(n->output());
        break;
      case QuantKind::kFloat:
        break;
    }
  }
};

observers::ObserverSpec activation_spec(const QConfig& q) {
  observers::ObserverSpec spec;
  spec.kind = q.activation_observer;
  spec.method = q.activation_method;
  spec.percentile = q.activation_percentile;
  const kernels::QRange r = kernels::quant_range(
      q.activation_dtype == c10::kQInt8 ? kernels::QFormat::kInt8 : kernels::QFormat::kUInt8,
      q.activation_reduce_range);
  spec.config.quant_min = r.qmin;
  spec.config.quant_max = r.qmax;
  spec.config.symmetric = false;
  spec.config.skip_non_float = true;  // integer tensors pass through; convert drops such observers
  return spec;
}

// Inserts `%v.obs = obs.forward(%v)` right after v is defined and sends v's other uses to it.
void insert_call(torch::jit::Graph& graph, Value* self, Value* v, const std::string& attr) {
  Node* def = v->node();
  torch::jit::WithInsertPoint guard(def->kind() == c10::prim::Param ? def->owningBlock()->nodes().front()
                                                                     : def->next());
  Value* obs = graph.insertGetAttr(self, attr);
  Node* call = graph.create(c10::prim::CallMethod, {obs, v});
  call->s_(c10::attr::name, "forward");
  call->output()->setType(v->type());
  call->output()->setDebugName(v->debugNameBase() + ".obs");
  graph.insertNode(call);
  v->replaceAllUsesAfterNodeWith(call, call->output());
}

}  // namespace

int64_t insert_observers(torch::jit::Module& module, const QConfig& qconfig) {
  auto graph = module.get_method("forward").graph();
  const Regions regions(graph->block());
  Annotator a{qconfig, regions, {}, {}};
  for_each_node(graph->block(), [&](Node* n) { a.visit(n); });

  Value* self = graph->inputs().at(0);
  const observers::ObserverSpec spec = activation_spec(qconfig);
  int64_t count = 0;
  std::unordered_map<Value*, std::string> attr_of_root;  // one observer per sharing group
  for (Value* v : a.to_observe) {
    Value* r = a.root(v);
    auto it = attr_of_root.find(r);
    if (it == attr_of_root.end()) {
      const std::string attr = kObserverPrefix + std::to_string(count++);
      c10::IValue obs = observers::make_observer(spec);
      module.register_attribute(attr, obs.type(), obs);
      it = attr_of_root.emplace(r, attr).first;
    }
    insert_call(*graph, self, v, it->second);
  }
  return count;
}

}  // namespace tqx::passes
