// prepare / convert / summary: the C++ API and the quantx::prepare, quantx::convert and
// quantx::summary dispatcher operators over it.
#include <torch/csrc/jit/ir/ir.h>
#include <torch/library.h>

#include <sstream>

#include "api/pipeline.h"
#include "passes/canonicalize.h"
#include "passes/convert.h"
#include "passes/equalize.h"
#include "passes/graph_utils.h"
#include "passes/insert_observers.h"
#include "passes/prepare_qat.h"
#include "passes/qconfig.h"
#include "passes/quantize_dynamic.h"
#include "passes/quantize_weights.h"

namespace torchquantx {

using tqx::passes::kQConfigAttr;
using tqx::passes::kSummaryAttr;
using tqx::passes::QConfig;

torch::jit::Module prepare(const torch::jit::Module& model, const std::string& qconfig,
                           const std::vector<std::string>& skip, const std::vector<std::string>& skip_types) {
  QConfig q = QConfig::preset_named(qconfig);
  q.skip_modules = skip;
  q.skip_types = skip_types;
  // BatchNorm statistics are kept (by layer) for data-free ranges and analytic bias correction.
  tqx::passes::PreActivationMap stats;
  torch::jit::Module prepared = tqx::passes::canonicalize_with_preactivation(model, &stats);
  tqx::passes::insert_observers(prepared, q);
  tqx::passes::store_preactivation(prepared, stats);
  prepared.register_attribute(kQConfigAttr, c10::StringType::get(), q.serialize());
  return prepared;
}

torch::jit::Module prepare_qat(const torch::jit::Module& model, const std::string& qconfig,
                               const std::vector<std::string>& skip, const std::vector<std::string>& skip_types) {
  QConfig q = QConfig::preset_named(qconfig);
  q.skip_modules = skip;
  q.skip_types = skip_types;
  return tqx::passes::prepare_qat(model, q);
}

namespace {

torch::jit::Module convert_impl(const torch::jit::Module& prepared, const std::string& target, bool warn) {
  TORCH_CHECK(prepared.hasattr(kQConfigAttr), "torchquantx.convert: the module was not made by "
              "torchquantx.prepare (it has no ", kQConfigAttr, " attribute); call prepare first");
  TORCH_CHECK(!prepared.hasattr(kSummaryAttr), "torchquantx.convert: the module is already converted");
  torch::jit::Module out = prepared.clone();
  if (out.hasattr(tqx::passes::kQatAttr)) tqx::passes::qat_to_prepared(out);
  tqx::passes::ConvertOptions options;
  options.target = target;
  options.qconfig = QConfig::deserialize(out.attr(kQConfigAttr).toStringRef());
  options.warn_unreached = warn;
  std::string report;
  tqx::passes::convert_module(out, options, &report);
  out.register_attribute(kSummaryAttr, c10::StringType::get(), "target=" + target + "\n" + report);
  return out;
}

}  // namespace

torch::jit::Module convert(const torch::jit::Module& prepared, const std::string& target) {
  return convert_impl(prepared, target, /*warn=*/true);
}

torch::jit::Module quantize_dynamic(const torch::jit::Module& model, bool weight_per_channel, bool reduce_range,
                                    const std::string& engine) {
  torch::jit::Module out = tqx::passes::canonicalize(model);
  std::string report;
  tqx::passes::quantize_dynamic_linear(out, weight_per_channel, reduce_range, engine, &report);
  tqx::passes::quantize_dynamic_rnn(out, reduce_range, engine, &report);
  out.register_attribute(kSummaryAttr, c10::StringType::get(), "target=native (dynamic)\n" + report);
  return out;
}

torch::jit::Module quantize_weights(const torch::jit::Module& model, int64_t bits) {
  torch::jit::Module out = tqx::passes::canonicalize(model);
  tqx::passes::quantize_weights_only(out, bits, nullptr);  // also records the summary
  return out;
}

std::string summary(const torch::jit::Module& module) {
  if (module.hasattr(kSummaryAttr)) return module.attr(kSummaryAttr).toStringRef();
  TORCH_CHECK(module.hasattr(kQConfigAttr), "torchquantx.summary: the module is neither prepared nor converted by "
              "torchquantx");
  std::ostringstream os;
  os << "prepared, qconfig " << module.attr(kQConfigAttr).toStringRef() << "\n";
  auto graph = module.get_method("forward").graph();
  tqx::passes::for_each_node(graph->block(), [&](torch::jit::Node* n) {
    if (n->kind() != c10::prim::CallMethod || n->input(0)->node()->kind() != c10::prim::GetAttr) return;
    const std::string attr = n->input(0)->node()->s(c10::attr::name);
    if (attr.rfind(tqx::passes::kObserverPrefix, 0) != 0) return;
    const c10::IValue obs = module.attr(attr);
    auto& describe = obs.toObject()->type()->getMethod("describe");
    os << attr << "  observes " << tqx::passes::describe_value(n->input(1)) << "  "
       << describe({obs}).toStringRef() << "\n";
  });
  return os.str();
}

}  // namespace torchquantx

namespace tqx::passes {
namespace {

torch::jit::Module module_arg(const char* op, const c10::IValue& v) {
  TORCH_CHECK(v.isObject() && v.toObject()->type()->is_module(), op,
              ": module should be a TorchScript module (pass scripted_model._c from Python, or use "
              "torchquantx.", op + 8, " which accepts nn.Module), got ", v.tagKind());
  return torch::jit::Module(v.toObject());
}

c10::IValue prepare_op(c10::IValue module, std::string qconfig, c10::optional<std::vector<std::string>> skip,
                       c10::optional<std::vector<std::string>> skip_types) {
  return torchquantx::prepare(module_arg("quantx::prepare", module), qconfig,
                              skip.value_or(std::vector<std::string>{}), skip_types.value_or(std::vector<std::string>{}))
      ._ivalue();
}

c10::IValue prepare_qat_op(c10::IValue module, std::string qconfig, c10::optional<std::vector<std::string>> skip,
                           c10::optional<std::vector<std::string>> skip_types) {
  return torchquantx::prepare_qat(module_arg("quantx::prepare_qat", module), qconfig,
                                  skip.value_or(std::vector<std::string>{}),
                                  skip_types.value_or(std::vector<std::string>{}))
      ._ivalue();
}

c10::IValue convert_op(c10::IValue module, std::string target) {
  return torchquantx::convert_impl(module_arg("quantx::convert", module), target, /*warn=*/false)._ivalue();
}

c10::IValue quantize_dynamic_op(c10::IValue module, bool weight_per_channel, bool reduce_range, std::string engine) {
  return torchquantx::quantize_dynamic(module_arg("quantx::quantize_dynamic", module), weight_per_channel,
                                       reduce_range, engine)
      ._ivalue();
}

c10::IValue quantize_weights_op(c10::IValue module, int64_t bits) {
  return torchquantx::quantize_weights(module_arg("quantx::quantize_weights", module), bits)._ivalue();
}

std::string summary_op(c10::IValue module) { return torchquantx::summary(module_arg("quantx::summary", module)); }

// For each observer of a prepared module: where it sits, batches seen, NaN/Inf values seen.
std::tuple<std::vector<std::string>, std::vector<int64_t>, std::vector<int64_t>> observer_stats_op(
    c10::IValue module) {
  const torch::jit::Module m = module_arg("quantx::observer_stats", module);
  std::vector<std::string> places;
  std::vector<int64_t> batches, nonfinite;
  auto graph = m.get_method("forward").graph();
  for_each_node(graph->block(), [&](torch::jit::Node* n) {
    if (n->kind() != c10::prim::CallMethod || n->input(0)->node()->kind() != c10::prim::GetAttr) return;
    const std::string attr = n->input(0)->node()->s(c10::attr::name);
    if (attr.rfind(kObserverPrefix, 0) != 0) return;
    const c10::IValue obs = m.attr(attr);
    auto& ty = *obs.toObject()->type();
    places.push_back(describe_value(n->input(1)));
    batches.push_back(ty.getMethod("batches")({obs}).toInt());
    nonfinite.push_back(ty.getMethod("nonfinite_count")({obs}).toInt());
  });
  return {places, batches, nonfinite};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("prepare(Any module, str qconfig=\"x86\", str[]? skip=None, str[]? skip_types=None) -> Any", prepare_op);
  m.def("prepare_qat(Any module, str qconfig=\"x86\", str[]? skip=None, str[]? skip_types=None) -> Any",
        prepare_qat_op);
  m.def("convert(Any module, str target=\"quantx\") -> Any", convert_op);
  m.def("summary(Any module) -> str", summary_op);
  m.def("quantize_weights(Any module, int bits=8) -> Any", quantize_weights_op);
  m.def("quantize_dynamic(Any module, bool weight_per_channel=True, bool reduce_range=False, "
        "str engine=\"onednn\") -> Any",
        quantize_dynamic_op);
  m.def("observer_stats(Any module) -> (str[] places, int[] batches, int[] nonfinite)", observer_stats_op);
}

}  // namespace tqx::passes
