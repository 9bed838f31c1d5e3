// Observer insertion and convert (native and reference) on small script modules built in C++.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/testing/file_check.h>

#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kernels/isa.h"
#include "passes/canonicalize.h"
#include "passes/convert.h"
#include "passes/graph_utils.h"
#include "passes/insert_observers.h"
#include "passes/qconfig.h"
#include "test_util.h"

namespace tqx {
namespace {

using testing::error_of;
using testing::has_attr_with_prefix;
using testing::make_module;
using testing::relative_error;

using torch::jit::Graph;
using torch::jit::Module;
using torch::jit::Node;
using torch::jit::Value;
using torch::jit::testing::FileCheck;

// stem (conv + relu) -> max_pool -> block (conv + residual add) -> [gelu] -> flatten -> head (linear).
// Input [N, 3, 8, 8], output [N, 10].
Module make_net(bool with_gelu) {
  Module stem = make_module("Stem");
  stem.register_parameter("weight", at::randn({8, 3, 3, 3}) * 0.3, false);
  stem.register_parameter("bias", at::randn({8}) * 0.1, false);
  stem.define(R"JIT(
def forward(self, x):
    return torch.relu(torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1]))
)JIT");
  Module block = make_module("Block");
  block.register_parameter("weight", at::randn({8, 8, 3, 3}) * 0.12, false);
  block.define(R"JIT(
def forward(self, x):
    return torch.conv2d(x, self.weight, None, [1, 1], [1, 1]) + x
)JIT");
  Module head = make_module("Head");
  head.register_parameter("weight", at::randn({10, 128}) * 0.09, false);
  head.register_parameter("bias", at::randn({10}) * 0.1, false);
  head.define(R"JIT(
def forward(self, x):
    return torch.linear(x, self.weight, self.bias)
)JIT");
  Module net = make_module(with_gelu ? "NetGelu" : "Net");
  net.register_module("stem", stem);
  net.register_module("block", block);
  net.register_module("head", head);
  net.define(std::string(R"JIT(
def forward(self, x):
    y = torch.max_pool2d(self.stem.forward(x), [2, 2])
    y = self.block.forward(y)
)JIT") + (with_gelu ? "    y = torch.gelu(y)\n" : "") + R"JIT(
    return self.head.forward(torch.flatten(y, 1))
)JIT");
  net.eval();
  return net;
}

// Data-dependent control flow: one conv per branch of an if, one conv in a loop (batch-size trips).
Module make_branchy_net() {
  Module m = make_module("Branchy");
  m.register_parameter("w_pos", at::randn({4, 3, 3, 3}) * 0.3, false);
  m.register_parameter("w_neg", at::randn({4, 3, 3, 3}) * 0.3, false);
  m.register_parameter("w_loop", at::randn({4, 4, 3, 3}) * 0.2, false);
  m.define(R"JIT(
def forward(self, x):
    if bool(x.sum() > 0):
        y = torch.conv2d(x, self.w_pos, None, [1, 1], [1, 1])
    else:
        y = torch.conv2d(x, self.w_neg, None, [1, 1], [1, 1])
    for _ in range(x.size(0)):
        y = torch.conv2d(y, self.w_loop, None, [1, 1], [1, 1])
    return y
)JIT");
  m.eval();
  return m;
}

struct ObserverCall {
  Node* call;
  std::string attr;
  Value* observed;
};

std::vector<ObserverCall> observer_calls(const Graph& graph) {
  std::vector<ObserverCall> calls;
  passes::for_each_node(const_cast<Graph&>(graph).block(), [&](Node* n) {
    if (n->kind() != c10::prim::CallMethod) return;
    Node* get = n->input(0)->node();
    if (get->kind() != c10::prim::GetAttr) return;
    calls.push_back({n, get->s(c10::attr::name), n->input(1)});
  });
  return calls;
}

int count_kind(const Graph& graph, const char* kind) {
  const auto sym = c10::Symbol::fromQualString(kind);
  int n = 0;
  passes::for_each_node(const_cast<Graph&>(graph).block(), [&](Node* node) { n += node->kind() == sym; });
  return n;
}

std::vector<Node*> nodes_of_kind(const Graph& graph, const char* kind) {
  const auto sym = c10::Symbol::fromQualString(kind);
  std::vector<Node*> out;
  passes::for_each_node(const_cast<Graph&>(graph).block(), [&](Node* node) {
    if (node->kind() == sym) out.push_back(node);
  });
  return out;
}

Module prepare(const Module& model, const std::string& qconfig, const std::vector<std::string>& skip = {},
               const std::vector<std::string>& skip_types = {}) {
  Module m = passes::canonicalize(model);
  auto q = passes::QConfig::preset_named(qconfig);
  q.skip_modules = skip;
  q.skip_types = skip_types;
  passes::insert_observers(m, q);
  return m;
}

void calibrate(Module& m, int batches) {
  for (int i = 0; i < batches; ++i) m.forward({at::randn({4, 3, 8, 8})});
}

Module convert(const Module& prepared, const std::string& qconfig, const std::string& target,
               std::string* report = nullptr, const std::vector<std::string>& skip = {}) {
  Module out = prepared.clone();
  passes::ConvertOptions options;
  options.target = target;
  options.qconfig = passes::QConfig::preset_named(qconfig);
  options.qconfig.skip_modules = skip;
  passes::convert_module(out, options, report);
  return out;
}

// ---- insert_observers --------------------------------------------------------------------------

TEST(InsertObservers, ObservesEachInt8ValueOnce) {
  at::manual_seed(10);
  Module m = passes::canonicalize(make_net(/*with_gelu=*/true));
  const auto graph = m.get_method("forward").graph();
  EXPECT_EQ(count_kind(*graph, "prim::CallMethod"), 0);
  const int64_t inserted = passes::insert_observers(m, passes::QConfig::preset_named("x86"));
  EXPECT_EQ(inserted, 6);

  // Observed, in order: the input; the stem's relu (fused into its conv); the block's conv; the
  // residual add; the flatten after gelu (the head's input); the head's output. Not the pool.
  const auto calls = observer_calls(*graph);
  ASSERT_EQ(calls.size(), 6u) << *graph;
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"prim::Param", ""},  {"aten::relu", "stem"},     {"aten::conv2d", "block"},
      {"aten::add", "block"}, {"aten::flatten", ""}, {"aten::linear", "head"}};
  std::set<std::string> attrs;
  for (size_t i = 0; i < calls.size(); ++i) {
    const Node* producer = calls[i].observed->node();
    EXPECT_EQ(producer->kind().toQualString(), expected[i].first) << i;
    EXPECT_EQ(passes::layer_of(producer), expected[i].second) << i;
    EXPECT_EQ(calls[i].call->s(c10::attr::name), "forward");
    EXPECT_EQ(calls[i].attr.rfind(passes::kObserverPrefix, 0), 0u) << calls[i].attr;
    attrs.insert(calls[i].attr);
    ASSERT_TRUE(m.hasattr(calls[i].attr));
    const c10::IValue obs = m.attr(calls[i].attr);
    ASSERT_TRUE(obs.isObject());
    EXPECT_NE(obs.toObject()->type()->name()->qualifiedName().find("quantx.HistogramObserver"), std::string::npos);
    // Every later use of the value reads the observer's output instead.
    for (const auto& use : calls[i].observed->uses()) EXPECT_EQ(use.user, calls[i].call) << *use.user;
  }
  EXPECT_EQ(attrs, (std::set<std::string>{"_tqx_obs_0", "_tqx_obs_1", "_tqx_obs_2", "_tqx_obs_3", "_tqx_obs_4",
                                          "_tqx_obs_5"}));
  EXPECT_EQ(calls[0].observed, graph->inputs()[1]);
  EXPECT_EQ(graph->outputs()[0], calls[5].call->output());

  FileCheck()
      .check("prim::CallMethod")
      ->check("aten::conv2d")
      ->check_not("prim::CallMethod")
      ->check("aten::relu")
      ->check("prim::CallMethod")
      ->check("aten::max_pool2d")
      ->check_not("prim::CallMethod")
      ->check("aten::conv2d")
      ->check("prim::CallMethod")
      ->check("aten::add")
      ->check("prim::CallMethod")
      ->check("aten::gelu")
      ->check_not("prim::CallMethod")
      ->check("aten::flatten")
      ->check("prim::CallMethod")
      ->check("aten::linear")
      ->check("prim::CallMethod")
      ->run(*graph);
}

TEST(InsertObservers, PreparedModuleComputesTheSameFunction) {
  at::manual_seed(11);
  Module net = make_net(true);
  Module m = prepare(net, "x86");
  const at::Tensor x = at::randn({2, 3, 8, 8});
  EXPECT_TRUE(at::allclose(m.forward({x}).toTensor(), net.forward({x}).toTensor(), 1e-5, 1e-5));
  const c10::IValue obs = m.attr("_tqx_obs_0");
  EXPECT_EQ(obs.toObject()->type()->getMethod("batches")({obs}).toInt(), 1);
}

TEST(InsertObservers, ObserverSettingsFollowTheQConfig) {
  at::manual_seed(12);
  Module net = make_net(false);
  auto describe = [](const Module& m) {
    const c10::IValue obs = m.attr("_tqx_obs_0");
    return obs.toObject()->type()->getMethod("describe")({obs}).toStringRef();
  };
  const Module x86 = prepare(net, "x86");
  EXPECT_NE(describe(x86).find("HistogramObserver"), std::string::npos) << describe(x86);
  EXPECT_NE(describe(x86).find("quant_max=127"), std::string::npos) << describe(x86);
  const Module onednn = prepare(net, "onednn;activation_observer=minmax");
  EXPECT_NE(describe(onednn).find("MinMaxObserver"), std::string::npos) << describe(onednn);
  EXPECT_NE(describe(onednn).find("quant_max=255"), std::string::npos) << describe(onednn);
  EXPECT_NE(describe(onednn).find("symmetric=False"), std::string::npos) << describe(onednn);
}

TEST(InsertObservers, ReluIsNotFusedWhenTheConvOutputHasOtherUsers) {
  Module m = make_module("TwoUsers");
  m.register_parameter("w", at::randn({4, 4, 1, 1}), false);
  m.define(R"JIT(
def forward(self, x):
    y = torch.conv2d(x, self.w)
    return torch.relu(y), torch.sigmoid(y)
)JIT");
  m.eval();
  Module c = passes::canonicalize(m);
  EXPECT_EQ(passes::insert_observers(c, passes::QConfig::preset_named("x86")), 2);
  const auto graph = c.get_method("forward").graph();
  const auto calls = observer_calls(*graph);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].observed, graph->inputs()[1]);
  EXPECT_EQ(calls[1].observed->node()->kind(), c10::aten::conv2d);
  FileCheck().check("aten::conv2d")->check("prim::CallMethod")->check("aten::relu")->run(*graph);
}

TEST(InsertObservers, SkippedModulesStayUnobserved) {
  at::manual_seed(13);
  Module net = make_net(false);
  Module m = prepare(net, "x86", {"head"});
  const auto graph = m.get_method("forward").graph();
  const auto calls = observer_calls(*graph);
  // input, stem relu, block conv, block add; the head's input and output are not observed.
  ASSERT_EQ(calls.size(), 4u) << *graph;
  for (const auto& c : calls) {
    EXPECT_NE(passes::layer_of(c.observed->node()), "head");
    EXPECT_NE(c.observed->node()->kind(), c10::aten::flatten);
  }
  for (const Node* linear : nodes_of_kind(*graph, "aten::linear")) {
    EXPECT_EQ(linear->input(0)->node()->kind(), c10::aten::flatten);
    for (const auto& use : linear->output()->uses()) EXPECT_NE(use.user->kind(), c10::prim::CallMethod);
  }

  Module skip_stem = prepare(net, "x86", {"stem"});
  for (const auto& c : observer_calls(*skip_stem.get_method("forward").graph())) {
    EXPECT_NE(passes::layer_of(c.observed->node()), "stem");
    EXPECT_NE(c.observed, skip_stem.get_method("forward").graph()->inputs()[1]);
  }
}

TEST(InsertObservers, SkippedModuleClassesStayUnobserved) {
  at::manual_seed(15);
  Module m = prepare(make_net(false), "x86", {}, {"Head"});
  const auto calls = observer_calls(*m.get_method("forward").graph());
  ASSERT_EQ(calls.size(), 4u);
  for (const auto& c : calls) EXPECT_NE(passes::layer_of(c.observed->node()), "head");
  Module by_block = prepare(make_net(false), "x86", {}, {"Block"});
  const auto block_calls = observer_calls(*by_block.get_method("forward").graph());
  EXPECT_EQ(block_calls.size(), 4u);  // input, stem relu, the head's input and output
  for (const auto& c : block_calls) {
    EXPECT_NE(passes::layer_of(c.observed->node()), "block") << *c.observed->node();
  }
}

// Before: conv a, conv b (and a max-pooled a) -> cat. After: the conv outputs and the cat output
// call one shared observer (pooling keeps its input's qparams), so after convert the cat's inputs
// and output have identical qparams and quantized::cat only copies.
TEST(InsertObservers, CatInputsAndOutputShareOneObserver) {
  at::manual_seed(15);
  Module m = make_module("CatNet");
  m.register_parameter("wa", at::randn({4, 3, 3, 3}) * 0.3, false);
  m.register_parameter("wb", at::randn({4, 3, 3, 3}) * 2.0, false);
  m.register_parameter("wc", at::randn({2, 8, 1, 1}) * 0.3, false);
  m.define(R"JIT(
def forward(self, x):
    a = torch.max_pool2d(torch.conv2d(x, self.wa, None, [1, 1], [1, 1]), [2, 2])
    b = torch.conv2d(x, self.wb, None, [2, 2], [1, 1])
    return torch.conv2d(torch.cat([a, b], 1), self.wc)
)JIT");
  m.eval();
  Module prepared = prepare(m, "x86");
  const auto graph = prepared.get_method("forward").graph();
  const auto calls = observer_calls(*graph);
  std::map<std::string, int> uses;
  for (const auto& c : calls) ++uses[c.attr];
  // x; {conv a, conv b, cat} shared; the last conv's output.
  ASSERT_EQ(uses.size(), 3u) << *graph;
  int shared = 0;
  for (const auto& [attr, n] : uses) shared = std::max(shared, n);
  EXPECT_EQ(shared, 3) << *graph;

  for (int i = 0; i < 4; ++i) prepared.forward({at::randn({2, 3, 8, 8})});
  Module q = convert(prepared, "x86", "native");
  const auto qgraph = q.get_method("forward").graph();
  const auto cats = nodes_of_kind(*qgraph, "quantized::cat");
  ASSERT_EQ(cats.size(), 1u) << *qgraph;
  const double cat_scale = torch::jit::toIValue(cats[0]->input(2))->toDouble();
  int feeding = 0;
  for (const Node* conv : nodes_of_kind(*qgraph, "quantized::conv2d")) {
    if (conv->output()->uses()[0].user->kind() == c10::prim::ListConstruct ||
        conv->output()->uses()[0].user->kind() == c10::aten::max_pool2d) {
      ++feeding;
      EXPECT_EQ(torch::jit::toIValue(conv->input(2))->toDouble(), cat_scale) << *conv;
    }
  }
  EXPECT_EQ(feeding, 2) << *qgraph;
  EXPECT_FALSE(has_attr_with_prefix(q, passes::kObserverPrefix));
  const at::Tensor x = at::randn({2, 3, 8, 8});
  EXPECT_LT(relative_error(q.forward({x}).toTensor(), m.forward({x}).toTensor()), 0.1);
}

TEST(InsertObservers, ObservesValuesInsideIfAndLoopBlocks) {
  at::manual_seed(14);
  Module m = prepare(make_branchy_net(), "x86");
  const auto graph = m.get_method("forward").graph();
  ASSERT_EQ(count_kind(*graph, "prim::If"), 1) << *graph;
  ASSERT_EQ(count_kind(*graph, "prim::Loop"), 1) << *graph;
  const auto calls = observer_calls(*graph);
  // The input; each branch's conv output; the loop-carried input and the conv output in the body.
  ASSERT_EQ(calls.size(), 5u) << *graph;
  int in_if = 0, in_loop = 0;
  for (const auto& c : calls) {
    const Node* owner = c.call->owningBlock()->owningNode();
    EXPECT_EQ(c.observed->node()->owningBlock(), c.call->owningBlock());
    if (owner == nullptr) continue;
    in_if += owner->kind() == c10::prim::If;
    in_loop += owner->kind() == c10::prim::Loop;
  }
  EXPECT_EQ(in_if, 2);
  EXPECT_EQ(in_loop, 2);
  for (const Node* conv : nodes_of_kind(*graph, "aten::conv2d")) {
    EXPECT_EQ(conv->input(0)->node()->kind(), c10::prim::CallMethod) << *conv;
  }
}

// ---- convert -----------------------------------------------------------------------------------

class ConvertNet : public ::testing::Test {
 protected:
  void SetUp() override {
    at::manual_seed(20);
    float_net_ = make_net(/*with_gelu=*/true);
    prepared_ = prepare(float_net_, "x86");
    calibrate(prepared_, 8);
  }
  Module float_net_;
  Module prepared_;
};

TEST_F(ConvertNet, NativeLowersToQuantizedOps) {
  std::string report;
  Module q = convert(prepared_, "x86", "native", &report);
  const auto graph = q.get_method("forward").graph();
  FileCheck()
      .check("aten::quantize_per_tensor")
      ->check("quantized::conv2d_relu")
      ->check("aten::max_pool2d")
      ->check("quantized::conv2d")
      ->check("quantized::add")
      ->check("aten::dequantize")
      ->check("aten::gelu")
      ->check("aten::quantize_per_tensor")
      ->check("quantized::linear")
      ->check("aten::dequantize")
      ->run(*graph);
  FileCheck()
      .check_not("prim::CallMethod")
      ->check_not("aten::conv2d")
      ->check_not("aten::linear")
      ->check_not("aten::add")
      ->check_not("aten::relu")
      ->run(*graph);
  EXPECT_EQ(count_kind(*graph, "aten::quantize_per_tensor"), 2) << *graph;
  EXPECT_EQ(count_kind(*graph, "aten::dequantize"), 2) << *graph;
  EXPECT_FALSE(has_attr_with_prefix(q, passes::kObserverPrefix));
  EXPECT_TRUE(q.hasattr(std::string(passes::kPackedPrefix) + "0"));
  EXPECT_TRUE(has_attr_with_prefix(prepared_, passes::kObserverPrefix));  // the input module keeps them

  // The input is quantized once, straight away; gelu reads a dequantized value; the output is float.
  const auto quants = nodes_of_kind(*graph, "aten::quantize_per_tensor");
  EXPECT_EQ(quants[0]->input(0), graph->inputs()[1]);
  for (const Node* gelu : nodes_of_kind(*graph, "aten::gelu")) {
    EXPECT_EQ(gelu->input(0)->node()->kind(), c10::aten::dequantize);
  }
  EXPECT_EQ(graph->outputs()[0]->node()->kind(), c10::aten::dequantize);
  // Max-pooling runs on the int8 tensor the fused conv produced.
  for (const Node* pool : nodes_of_kind(*graph, "aten::max_pool2d")) {
    EXPECT_EQ(pool->input(0)->node()->kind(), c10::Symbol::fromQualString("quantized::conv2d_relu"));
  }

  EXPECT_NE(report.find("quantized::conv2d_relu"), std::string::npos) << report;
  EXPECT_NE(report.find("quantized::linear"), std::string::npos) << report;
  EXPECT_NE(report.find("aten::gelu -> float"), std::string::npos) << report;

  const at::Tensor x = at::randn({8, 3, 8, 8});
  const at::Tensor expected = float_net_.forward({x}).toTensor();
  const at::Tensor got = q.forward({x}).toTensor();
  EXPECT_FALSE(got.is_quantized());
  EXPECT_LT(relative_error(got, expected), 0.1);
}

TEST_F(ConvertNet, SummaryDoesNotCallInt8PoolingFloat) {
  std::string report;
  convert(prepared_, "x86", "native", &report);
  EXPECT_NE(report.find("aten::max_pool2d -> int8"), std::string::npos) << report;
  EXPECT_EQ(report.find("aten::max_pool2d -> float"), std::string::npos) << report;
}

TEST_F(ConvertNet, ReferenceKeepsFloatOpsBetweenQuantizeAndDequantize) {
  Module q = convert(prepared_, "x86", "reference");
  const auto graph = q.get_method("forward").graph();
  FileCheck().check_not("quantized::")->check_not("prim::CallMethod")->run(*graph);
  EXPECT_FALSE(has_attr_with_prefix(q, passes::kObserverPrefix));
  EXPECT_FALSE(has_attr_with_prefix(q, passes::kPackedPrefix));
  const auto convs = nodes_of_kind(*graph, "aten::conv2d");
  ASSERT_EQ(convs.size(), 2u) << *graph;
  // The stem reads the quantized input; the block reads the pooled int8 values, still in float.
  const Node* dq = convs[0]->input(0)->node();
  ASSERT_EQ(dq->kind(), c10::aten::dequantize) << *graph;
  EXPECT_EQ(dq->input(0)->node()->kind(), c10::aten::quantize_per_tensor);
  EXPECT_EQ(dq->input(0)->node()->input(0), graph->inputs()[1]);
  const Node* pool = convs[1]->input(0)->node();
  ASSERT_EQ(pool->kind(), c10::aten::max_pool2d) << *graph;
  EXPECT_EQ(pool->input(0)->node()->kind(), c10::aten::dequantize);
  FileCheck()
      .check("aten::quantize_per_tensor")
      ->check("aten::dequantize")
      ->check("aten::conv2d")
      ->check("aten::relu")
      ->check("aten::quantize_per_tensor")
      ->check("aten::dequantize")
      ->check("aten::max_pool2d")
      ->check("aten::conv2d")
      ->check("aten::quantize_per_tensor")
      ->check("aten::dequantize")
      ->check("aten::add")
      ->check("aten::quantize_per_tensor")
      ->check("aten::dequantize")
      ->check("aten::linear")
      ->check("aten::quantize_per_tensor")
      ->check("aten::dequantize")
      ->run(*graph);

  const at::Tensor x = at::randn({8, 3, 8, 8});
  const at::Tensor expected = float_net_.forward({x}).toTensor();
  const at::Tensor ref = q.forward({x}).toTensor();
  EXPECT_LT(relative_error(ref, expected), 0.1);
  const at::Tensor native = convert(prepared_, "x86", "native").forward({x}).toTensor();
  EXPECT_LT(relative_error(native, ref), 0.05);
}

// The reference model computes what the native one does: every int8 op uses int8-rounded weights
// (symmetric per output channel: w = q * max|w_c| / 127.5 with integer q), including a conv that
// reads its input through a same-qparams op such as max_pool2d.
TEST_F(ConvertNet, ReferenceRoundsEveryInt8Weight) {
  Module q = convert(prepared_, "x86", "reference");
  const auto graph = q.get_method("forward").graph();
  std::vector<at::Tensor> originals = {float_net_.attr("stem").toModule().attr("weight").toTensor(),
                                       float_net_.attr("block").toModule().attr("weight").toTensor(),
                                       float_net_.attr("head").toModule().attr("weight").toTensor()};
  std::vector<Node*> ops = nodes_of_kind(*graph, "aten::conv2d");
  const auto linears = nodes_of_kind(*graph, "aten::linear");
  ops.insert(ops.end(), linears.begin(), linears.end());
  ASSERT_EQ(ops.size(), originals.size()) << *graph;
  for (size_t i = 0; i < ops.size(); ++i) {
    SCOPED_TRACE(*ops[i]);
    const at::Tensor w = torch::jit::toIValue(ops[i]->input(1))->toTensor().flatten(1);
    const at::Tensor original = originals[i].flatten(1);
    const at::Tensor scale = original.abs().amax(1, /*keepdim=*/true) / 127.5;
    EXPECT_FALSE(at::equal(w, original)) << "weight left in float";
    const at::Tensor steps = w / scale;
    EXPECT_LT((steps - steps.round()).abs().max().item<float>(), 1e-3);
    EXPECT_LE(((w - original).abs() / scale).max().item<float>(), 0.5 + 1e-3);
  }
}

TEST_F(ConvertNet, UnknownTargetThrows) {
  const std::string msg = error_of([&] { convert(prepared_, "x86", "tensorrt"); });
  EXPECT_NE(msg.find("'tensorrt'"), std::string::npos) << msg;
}

TEST(Convert, WithoutFloatOpsQuantizesOnceAndDequantizesOnce) {
  at::manual_seed(21);
  Module net = make_net(/*with_gelu=*/false);
  Module prepared = prepare(net, "onednn");
  calibrate(prepared, 4);
  Module q = convert(prepared, "onednn", "native");
  const auto graph = q.get_method("forward").graph();
  ASSERT_EQ(count_kind(*graph, "aten::quantize_per_tensor"), 1) << *graph;
  ASSERT_EQ(count_kind(*graph, "aten::dequantize"), 1) << *graph;
  EXPECT_EQ(nodes_of_kind(*graph, "aten::quantize_per_tensor")[0]->input(0), graph->inputs()[1]);
  EXPECT_EQ(graph->outputs()[0]->node()->kind(), c10::aten::dequantize);
  FileCheck()
      .check("quantized::conv2d_relu")
      ->check("aten::max_pool2d")
      ->check("quantized::conv2d")
      ->check("quantized::add")
      ->check("aten::flatten")
      ->check("quantized::linear")
      ->run(*graph);
  const at::Tensor x = at::randn({8, 3, 8, 8});
  EXPECT_LT(relative_error(q.forward({x}).toTensor(), net.forward({x}).toTensor()), 0.1);
}

TEST(Convert, ReluAfterAddFusesIntoAddRelu) {
  at::manual_seed(22);
  Module m = make_module("AddRelu");
  m.register_parameter("w", at::randn({4, 3, 1, 1}) * 0.5, false);
  m.define(R"JIT(
def forward(self, x):
    y = torch.conv2d(x, self.w)
    return torch.relu(y + torch.conv2d(x, self.w * 0.5))
)JIT");
  m.eval();
  Module prepared = prepare(m, "x86");
  calibrate(prepared, 4);
  Module q = convert(prepared, "x86", "native");
  const auto graph = q.get_method("forward").graph();
  FileCheck().check("quantized::add_relu")->check_not("aten::relu")->check_not("aten::add")->run(*graph);
  const at::Tensor x = at::randn({4, 3, 8, 8});
  EXPECT_LT(relative_error(q.forward({x}).toTensor(), m.forward({x}).toTensor()), 0.1);
}

TEST(Convert, LowersEveryInt8OpKind) {
  at::manual_seed(28);
  Module m = make_module("Kinds");
  m.register_parameter("w_dw", at::randn({4, 1, 3, 3}) * 0.3, false);
  m.register_parameter("b_dw", at::randn({4}) * 0.1, false);
  m.register_parameter("w_pw", at::randn({4, 4, 1, 1}) * 0.4, false);
  m.register_parameter("w_out", at::randn({6, 8, 3, 3}) * 0.1, false);
  m.define(R"JIT(
def forward(self, x):
    a = torch.conv2d(x, self.w_dw, self.b_dw, [1, 1], [1, 1], [1, 1], 4)
    b = torch.relu(torch.conv2d(x, self.w_pw))
    c = torch.cat([a, b], 1)
    d = torch.hardswish(c) * torch.sigmoid(c)
    e = torch.conv2d(torch.tanh(d), self.w_out, None, [2, 2])
    return torch.mean(e, [2, 3])
)JIT");
  m.eval();
  Module prepared = prepare(m, "x86");
  // Observed: x, a, relu(b), cat, hardswish, mul, the last conv. Not: sigmoid, tanh, mean.
  EXPECT_EQ(observer_calls(*prepared.get_method("forward").graph()).size(), 7u);
  for (int i = 0; i < 4; ++i) prepared.forward({at::randn({4, 4, 9, 9})});
  Module q = convert(prepared, "x86", "native");
  const auto graph = q.get_method("forward").graph();
  FileCheck()
      .check_count("aten::quantize_per_tensor", 1, /*exactly=*/true)
      ->check("quantized::conv2d")
      ->check("quantized::conv2d_relu")
      ->check("quantized::cat")
      ->check("quantized::hardswish")
      ->check("aten::sigmoid")
      ->check("quantized::mul")
      ->check("aten::tanh")
      ->check("quantized::conv2d")
      ->check("aten::mean")
      ->check_count("aten::dequantize", 1, /*exactly=*/true)
      ->run(*graph);
  FileCheck().check_not("aten::conv2d")->check_not("aten::cat")->check_not("aten::hardswish")->run(*graph);
  EXPECT_EQ(graph->outputs()[0]->node()->kind(), c10::aten::dequantize);
  const at::Tensor x = at::randn({4, 4, 9, 9});
  EXPECT_LT(relative_error(q.forward({x}).toTensor(), m.forward({x}).toTensor()), 0.1);
}

TEST(Convert, Conv1dWithRelu) {
  at::manual_seed(29);
  Module m = make_module("Conv1d");
  m.register_parameter("w", at::randn({6, 4, 3}) * 0.3, false);
  m.register_parameter("b", at::randn({6}) * 0.1, false);
  m.define("def forward(self, x):\n    return torch.relu(torch.conv1d(x, self.w, self.b, [1], [1]))\n");
  m.eval();
  // PyTorch's oneDNN kernels saturate 8-bit activations' pair sums on x86 CPUs without VNNI
  // (convert warns): there the 7-bit preset.
  const kernels::Isa isa = kernels::detected_isa();
  const std::string preset = isa == kernels::Isa::kAVX2 || isa == kernels::Isa::kAVX512 ? "x86" : "onednn";
  Module prepared = prepare(m, preset);
  for (int i = 0; i < 4; ++i) prepared.forward({at::randn({4, 4, 16})});
  Module q = convert(prepared, preset, "native");
  FileCheck()
      .check("quantized::conv1d_relu")
      ->check_not("aten::relu")
      ->check_not("aten::conv1d")
      ->run(*q.get_method("forward").graph());
  const at::Tensor x = at::randn({4, 4, 16});
  EXPECT_LT(relative_error(q.forward({x}).toTensor(), m.forward({x}).toTensor()), 0.1);
}

// Int8 convolutions return channels-last tensors, which view(N, -1) cannot flatten: on int8
// tensors aten::view becomes aten::reshape (before: conv -> view -> linear; after: quantized conv
// -> reshape -> quantized linear, and it runs).
TEST(Convert, ViewOfAnInt8ConvOutputBecomesReshape) {
  at::manual_seed(30);
  Module m = make_module("ConvView");
  m.register_parameter("w", at::randn({8, 3, 3, 3}) * 0.3, false);
  m.register_parameter("fc", at::randn({4, 8 * 6 * 6}) * 0.05, false);
  m.define(R"JIT(
def forward(self, x):
    y = torch.relu(torch.conv2d(x, self.w))
    return torch.linear(y.view(y.size(0), -1), self.fc)
)JIT");
  m.eval();
  Module prepared = prepare(m, "x86");
  for (int i = 0; i < 4; ++i) prepared.forward({at::randn({2, 3, 8, 8})});
  for (const char* target : {"native", "quantx"}) {
    Module q = convert(prepared, "x86", target);
    const auto graph = q.get_method("forward").graph();
    FileCheck().check("conv2d")->check("aten::reshape")->check("linear")->check_not("aten::view")->run(*graph);
    const at::Tensor x = at::randn({2, 3, 8, 8});
    EXPECT_LT(relative_error(q.forward({x}).toTensor(), m.forward({x}).toTensor()), 0.1) << target;
  }
}

// Integer tensor arithmetic (index computations) is not an activation: it should neither be
// observed nor break calibration.
TEST(Convert, IntegerTensorArithmeticIsLeftAlone) {
  Module m = make_module("IntAdd");
  m.register_parameter("w", at::randn({4, 3, 1, 1}), false);
  m.define(R"JIT(
def forward(self, x, idx):
    return torch.conv2d(x, self.w), idx + idx
)JIT");
  m.eval();
  Module prepared = prepare(m, "x86");
  const at::Tensor idx = at::arange(6);
  for (int i = 0; i < 2; ++i) prepared.forward({at::randn({2, 3, 4, 4}), idx});
  Module q = convert(prepared, "x86", "native");
  const auto out = q.forward({at::randn({2, 3, 4, 4}), idx}).toTupleRef().elements();
  EXPECT_TRUE(at::equal(out[1].toTensor(), idx * 2));
}

TEST(Convert, BeforeCalibrationListsTheEmptyObservers) {
  at::manual_seed(23);
  Module prepared = prepare(make_net(true), "x86");
  const std::string msg = error_of([&] { convert(prepared, "x86", "native"); });
  EXPECT_NE(msg.find("6 of 6 observers saw no data"), std::string::npos) << msg;
  EXPECT_NE(msg.find("input 'x'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("stem (aten::relu)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("head (aten::linear)"), std::string::npos) << msg;
}

TEST(Convert, BranchNoCalibrationReachedStaysFloat) {
  at::manual_seed(24);
  Module float_net = make_branchy_net();
  Module prepared = prepare(float_net, "x86");
  for (int i = 0; i < 3; ++i) prepared.forward({at::rand({2, 3, 8, 8}) + 0.1});  // positive: the `if` branch only
  {
    // Before: 5 observers, one in the else branch with no data. After: that branch keeps its float
    // conv (with a warning naming the value), everything else is int8.
    std::string report;
    Module partial = convert(prepared, "x86", "native", &report);
    const auto graph = partial.get_method("forward").graph();
    EXPECT_EQ(count_kind(*graph, "quantized::conv2d"), 2) << *graph;
    const auto float_convs = nodes_of_kind(*graph, "aten::conv2d");
    ASSERT_EQ(float_convs.size(), 1u) << *graph;
    EXPECT_EQ(float_convs[0]->owningBlock()->owningNode()->kind(), c10::prim::If) << *graph;
    EXPECT_NE(report.find("its branch never ran during calibration"), std::string::npos) << report;
    // (Only inputs like the calibration data: the input's range never saw negative values.)
    const at::Tensor x = at::rand({2, 3, 8, 8}) + 0.1;
    EXPECT_LT(relative_error(partial.forward({x}).toTensor(), float_net.forward({x}).toTensor()), 0.1);
  }

  prepared.forward({-at::rand({2, 3, 8, 8}) - 0.1});
  Module q = convert(prepared, "x86", "native");
  const auto graph = q.get_method("forward").graph();
  EXPECT_EQ(count_kind(*graph, "quantized::conv2d"), 3) << *graph;
  EXPECT_EQ(count_kind(*graph, "aten::conv2d"), 0) << *graph;
  for (const at::Tensor& x : {at::rand({2, 3, 8, 8}) + 0.1, -at::rand({2, 3, 8, 8}) - 0.1}) {
    const at::Tensor expected = float_net.forward({x}).toTensor();
    EXPECT_LT(relative_error(q.forward({x}).toTensor(), expected), 0.1);
  }
}

TEST(Convert, NonFiniteCalibrationNamesTheLayer) {
  at::manual_seed(25);
  Module stem = make_module("LogStem");
  stem.register_parameter("weight", at::randn({4, 3, 3, 3}) * 0.3, false);
  stem.define(R"JIT(
def forward(self, x):
    return torch.conv2d(torch.log(x), self.weight, None, [1, 1], [1, 1])
)JIT");
  Module m = make_module("LogNet");
  m.register_module("features", stem);
  m.define("def forward(self, x):\n    return torch.relu(self.features.forward(x))\n");
  m.eval();
  Module prepared = prepare(m, "x86");
  prepared.forward({at::rand({2, 3, 8, 8}) + 0.5});
  at::Tensor bad = at::rand({2, 3, 8, 8}) + 0.5;
  bad[0][0][0][0] = -1.0;  // log(-1) = NaN
  prepared.forward({bad});
  const std::string msg = error_of([&] { convert(prepared, "x86", "native"); });
  EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("features (aten::log)"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("input 'x'"), std::string::npos) << msg;
}

TEST(Convert, NaNInTheInputNamesTheInput) {
  at::manual_seed(26);
  Module prepared = prepare(make_net(false), "x86");
  at::Tensor x = at::randn({2, 3, 8, 8});
  x[1][2][3][4] = std::numeric_limits<float>::quiet_NaN();
  prepared.forward({x});
  const std::string msg = error_of([&] { convert(prepared, "x86", "native"); });
  EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("input 'x': 1 values"), std::string::npos) << msg;
}

TEST(Convert, SkippedModuleKeepsItsFloatWeights) {
  at::manual_seed(27);
  Module net = make_net(false);
  Module prepared = prepare(net, "x86", {"head"});
  calibrate(prepared, 4);
  std::string report;
  Module q = convert(prepared, "x86", "native", &report, {"head"});
  const auto graph = q.get_method("forward").graph();
  const auto linears = nodes_of_kind(*graph, "aten::linear");
  ASSERT_EQ(linears.size(), 1u) << *graph;
  EXPECT_EQ(count_kind(*graph, "quantized::linear"), 0);
  const at::Tensor w = torch::jit::toIValue(linears[0]->input(1))->toTensor();
  EXPECT_TRUE(at::equal(w, net.attr("head").toModule().attr("weight").toTensor())) << report;
  EXPECT_NE(report.find("skipped by request"), std::string::npos) << report;
}

}  // namespace
}  // namespace tqx
