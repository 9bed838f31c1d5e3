// Graph-level passes and tables: canonicalize, the op registry and QConfig parsing.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/irparser.h>
#include <torch/csrc/jit/runtime/operator.h>
#include <torch/csrc/jit/testing/file_check.h>

#include <memory>
#include <set>
#include <string>
#include <unordered_map>

#include "passes/canonicalize.h"
#include "passes/op_registry.h"
#include "passes/qconfig.h"
#include "test_util.h"

namespace tqx {
namespace {

using testing::error_of;
using testing::has_attr_with_prefix;
using testing::make_module;
using testing::relative_error;

using torch::jit::testing::FileCheck;
using torch::jit::Graph;
using torch::jit::Module;
using torch::jit::Node;
using torch::jit::Value;

std::shared_ptr<Graph> parse(const std::string& ir, std::unordered_map<std::string, Value*>* values = nullptr) {
  auto graph = std::make_shared<Graph>();
  std::unordered_map<std::string, Value*> local;
  torch::jit::parseIR(ir, graph.get(), values ? *values : local, /*parse_tensor_constants=*/true);
  return graph;
}

// Expects `fn` to throw a c10::Error whose message contains `needle`.
template <typename Fn>
void expect_error_mentions(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected a c10::Error mentioning '" << needle << "'";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// ---- canonicalize_graph ------------------------------------------------------------------------

TEST(CanonicalizeGraph, InPlaceReluBecomesFunctional) {
  auto graph = parse(R"IR(
graph(%x : Tensor):
  %m : Tensor = aten::mul(%x, %x)
  %r : Tensor = aten::relu_(%m)
  return (%r))IR");
  FileCheck().check("aten::relu_")->run(*graph);
  passes::canonicalize_graph(graph);
  FileCheck().check("aten::mul")->check("aten::relu(")->check_not("aten::relu_")->run(*graph);
  const Node* relu = graph->outputs()[0]->node();
  EXPECT_EQ(relu->kind(), c10::aten::relu);
  EXPECT_EQ(relu->input(0)->node()->kind(), c10::aten::mul);
}

TEST(CanonicalizeGraph, TracedConvolutionBecomesConv2d) {
  // What torch.jit.trace records for nn.Conv2d.
  auto graph = parse(R"IR(
graph(%x : Tensor, %w : Tensor, %b : Tensor):
  %f : bool = prim::Constant[value=0]()
  %t : bool = prim::Constant[value=1]()
  %one : int = prim::Constant[value=1]()
  %s : int[] = prim::Constant[value=[1, 1]]()
  %p : int[] = prim::Constant[value=[0, 0]]()
  %y : Tensor = aten::_convolution(%x, %w, %b, %s, %s, %s, %f, %p, %one, %f, %f, %t, %t)
  return (%y))IR");
  FileCheck().check("aten::_convolution")->run(*graph);
  passes::canonicalize_graph(graph);
  FileCheck().check("aten::conv2d(")->check_not("aten::_convolution")->run(*graph);
}

TEST(CanonicalizeGraph, InPlaceAddBecomesFunctional) {
  auto graph = parse(R"IR(
graph(%x : Tensor, %y : Tensor):
  %one : int = prim::Constant[value=1]()
  %m : Tensor = aten::mul(%x, %x)
  %a : Tensor = aten::add_(%m, %y, %one)
  return (%a))IR");
  passes::canonicalize_graph(graph);
  FileCheck().check("aten::add(")->check_not("aten::add_")->run(*graph);
}

TEST(CanonicalizeGraph, EvalDropoutIsRemoved) {
  auto graph = parse(R"IR(
graph(%x : Tensor):
  %p : float = prim::Constant[value=0.5]()
  %train : bool = prim::Constant[value=0]()
  %d : Tensor = aten::dropout(%x, %p, %train)
  %r : Tensor = aten::relu(%d)
  return (%r))IR");
  passes::canonicalize_graph(graph);
  FileCheck().check_not("aten::dropout")->check("aten::relu")->run(*graph);
  EXPECT_EQ(graph->outputs()[0]->node()->input(0), graph->inputs()[0]);
}

TEST(CanonicalizeGraph, TrainingDropoutIsKept) {
  auto graph = parse(R"IR(
graph(%x : Tensor):
  %p : float = prim::Constant[value=0.5]()
  %train : bool = prim::Constant[value=1]()
  %d : Tensor = aten::dropout(%x, %p, %train)
  return (%d))IR");
  passes::canonicalize_graph(graph);
  FileCheck().check("aten::dropout")->run(*graph);
}

TEST(CanonicalizeGraph, ConstantBranchesAndDeadCodeVanish) {
  auto graph = parse(R"IR(
graph(%x : Tensor):
  %cond : bool = prim::Constant[value=0]()
  %unused : Tensor = aten::sigmoid(%x)
  %y : Tensor = prim::If(%cond)
    block0():
      %t : Tensor = aten::tanh(%x)
      -> (%t)
    block1():
      %r : Tensor = aten::relu(%x)
      -> (%r)
  return (%y))IR");
  passes::canonicalize_graph(graph);
  FileCheck().check_not("prim::If")->check_not("aten::tanh")->check_not("aten::sigmoid")->run(*graph);
  EXPECT_EQ(graph->outputs()[0]->node()->kind(), c10::aten::relu);
}

// ---- canonicalize(Module) ----------------------------------------------------------------------

Module conv_bn_module() {
  Module m = make_module("ConvBn");
  m.register_parameter("weight", at::randn({8, 3, 3, 3}) * 0.3, false);
  m.register_parameter("bias", at::randn({8}) * 0.1, false);
  m.register_parameter("bn_weight", at::rand({8}) + 0.5, false);
  m.register_parameter("bn_bias", at::randn({8}) * 0.2, false);
  m.register_buffer("running_mean", at::randn({8}) * 0.1);
  m.register_buffer("running_var", at::rand({8}) + 0.5);
  m.define(R"JIT(
def forward(self, x):
    y = torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1])
    y = torch.batch_norm(y, self.bn_weight, self.bn_bias, self.running_mean, self.running_var,
                         self.training, 0.1, 1e-05, False)
    return torch.relu_(y)
)JIT");
  m.eval();
  return m;
}

TEST(Canonicalize, FoldsBatchNormIntoConv) {
  at::manual_seed(1);
  Module m = conv_bn_module();
  FileCheck().check("aten::conv2d")->check("aten::batch_norm")->run(*m.get_method("forward").graph());
  Module c = passes::canonicalize(m);
  auto graph = c.get_method("forward").graph();
  FileCheck()
      .check_count("aten::conv2d", 1, /*exactly=*/true)
      ->check("aten::relu(")
      ->check_not("aten::batch_norm")
      ->check_not("aten::relu_")
      ->run(*graph);
  // The folded weight and bias are constants of the conv itself.
  for (const Node* n : graph->nodes()) {
    if (n->kind() != c10::aten::conv2d) continue;
    EXPECT_EQ(n->input(1)->node()->kind(), c10::prim::Constant);
    EXPECT_EQ(n->input(2)->node()->kind(), c10::prim::Constant);
  }
  const at::Tensor x = at::randn({2, 3, 10, 10});
  const at::Tensor expected = m.forward({x}).toTensor();
  const at::Tensor got = c.forward({x}).toTensor();
  EXPECT_TRUE(at::allclose(got, expected, 1e-5, 1e-5)) << (got - expected).abs().max().item<float>();
}

TEST(Canonicalize, LeavesTheInputModuleUnchanged) {
  at::manual_seed(2);
  Module m = conv_bn_module();
  std::unordered_map<std::string, at::Tensor> before;
  for (const auto& p : m.named_parameters()) before[p.name] = p.value.clone();
  for (const auto& b : m.named_buffers()) before[b.name] = b.value.clone();
  const at::Tensor x = at::randn({1, 3, 6, 6});
  const at::Tensor out_before = m.forward({x}).toTensor();

  const Module c = passes::canonicalize(m);
  EXPECT_NE(c._ivalue(), m._ivalue());
  FileCheck().check("aten::batch_norm")->check("aten::relu_")->run(*m.get_method("forward").graph());
  size_t seen = 0;
  for (const auto& p : m.named_parameters()) {
    ++seen;
    EXPECT_TRUE(at::equal(p.value, before.at(p.name))) << p.name;
  }
  for (const auto& b : m.named_buffers()) {
    ++seen;
    EXPECT_TRUE(at::equal(b.value, before.at(b.name))) << b.name;
  }
  EXPECT_EQ(seen, before.size());
  EXPECT_FALSE(m.is_training());
  EXPECT_TRUE(at::equal(m.forward({x}).toTensor(), out_before));
}

TEST(Canonicalize, InlinesSubmodulesAndDropsTrainingOnlyCode) {
  Module inner = make_module("Inner");
  inner.register_parameter("weight", at::randn({4, 4}), false);
  inner.define(R"JIT(
def forward(self, x):
    y = torch.linear(x, self.weight)
    if self.training:
        y = y * 2.0
    return torch.dropout(y, 0.3, self.training)
)JIT");
  Module m = make_module("Outer");
  m.register_module("fc", inner);
  m.define("def forward(self, x):\n    return torch.relu(self.fc.forward(x))\n");
  m.eval();
  Module c = passes::canonicalize(m);
  FileCheck()
      .check_not("prim::CallMethod")
      ->check("aten::linear")
      ->check_not("prim::If")
      ->check_not("aten::mul")
      ->check_not("aten::dropout")
      ->check("aten::relu")
      ->run(*c.get_method("forward").graph());
  const at::Tensor x = at::randn({3, 4});
  EXPECT_TRUE(at::allclose(c.forward({x}).toTensor(), m.forward({x}).toTensor()));
}

TEST(Canonicalize, RejectsTrainingMode) {
  Module m = conv_bn_module();
  m.train();
  expect_error_mentions([&] { passes::canonicalize(m); }, "eval");
}

// ---- op registry -------------------------------------------------------------------------------

constexpr const char* kRegistryIR = R"IR(
graph(%x : Tensor, %w_in : Tensor, %alpha_in : int):
  %w : Float(4, 3, 1, 1, strides=[3, 1, 1, 1], requires_grad=0, device=cpu) = prim::Constant[value=<Tensor>]()
  %lw : Float(4, 4, strides=[4, 1], requires_grad=0, device=cpu) = prim::Constant[value=<Tensor>]()
  %none : NoneType = prim::Constant()
  %s : int[] = prim::Constant[value=[1, 1]]()
  %p : int[] = prim::Constant[value=[0, 0]]()
  %one : int = prim::Constant[value=1]()
  %two : int = prim::Constant[value=2]()
  %onef : float = prim::Constant[value=1.]()
  %approx : str = prim::Constant[value="none"]()
  %conv_const : Tensor = aten::conv2d(%x, %w, %none, %s, %p, %s, %one)
  %conv_input_w : Tensor = aten::conv2d(%x, %w_in, %none, %s, %p, %s, %one)
  %lin : Tensor = aten::linear(%x, %lw, %none)
  %lin_input_w : Tensor = aten::linear(%x, %w_in, %none)
  %add_tt : Tensor = aten::add(%conv_const, %conv_input_w, %one)
  %add_float_alpha : Tensor = aten::add(%conv_const, %conv_input_w, %onef)
  %add_ts : Tensor = aten::add(%conv_const, %two, %one)
  %add_alpha2 : Tensor = aten::add(%conv_const, %conv_input_w, %two)
  %add_alpha_in : Tensor = aten::add(%conv_const, %conv_input_w, %alpha_in)
  %mul_tt : Tensor = aten::mul(%conv_const, %conv_input_w)
  %mul_ts : Tensor = aten::mul(%conv_const, %two)
  %list : Tensor[] = prim::ListConstruct(%conv_const, %conv_input_w)
  %cat : Tensor = aten::cat(%list, %one)
  %gelu : Tensor = aten::gelu(%x, %approx)
  %relu : Tensor = aten::relu(%x)
  %relu6 : Tensor = aten::relu6(%x)
  %sigmoid : Tensor = aten::sigmoid(%x)
  %pool : Tensor = aten::max_pool2d(%x, %s, %s, %p, %s, %two)
  %out : (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor) = prim::TupleConstruct(%conv_const, %conv_input_w, %lin, %lin_input_w, %add_tt, %add_float_alpha, %add_ts, %add_alpha2, %add_alpha_in, %mul_tt, %mul_ts, %cat, %gelu, %relu, %relu6, %sigmoid, %pool)
  return (%out))IR";

class OpRegistry : public ::testing::Test {
 protected:
  void SetUp() override { graph_ = parse(kRegistryIR, &values_); }
  const passes::OpRule* rule(const std::string& value) { return passes::find_rule(values_.at(value)->node()); }
  const Node* node(const std::string& value) { return values_.at(value)->node(); }

  std::shared_ptr<Graph> graph_;
  std::unordered_map<std::string, Value*> values_;
};

TEST_F(OpRegistry, ConvAndLinearNeedAConstantWeight) {
  const passes::OpRule* conv = rule("conv_const");
  ASSERT_NE(conv, nullptr);
  EXPECT_STREQ(conv->op, "aten::conv2d");
  EXPECT_EQ(conv->kind, passes::QuantKind::kInt8);
  EXPECT_EQ(conv->native, passes::NativeLowering::kConv);
  EXPECT_EQ(conv->weight, 1);
  EXPECT_TRUE(conv->fuses_relu);
  EXPECT_STREQ(conv->native_relu_op, "quantized::conv2d_relu");
  EXPECT_EQ(rule("conv_input_w"), nullptr);

  const passes::OpRule* lin = rule("lin");
  ASSERT_NE(lin, nullptr);
  EXPECT_STREQ(lin->op, "aten::linear");
  EXPECT_EQ(lin->native, passes::NativeLowering::kLinear);
  EXPECT_EQ(rule("lin_input_w"), nullptr);
}

TEST_F(OpRegistry, BinaryOpsNeedTwoTensorsAndUnitAlpha) {
  const passes::OpRule* add = rule("add_tt");
  ASSERT_NE(add, nullptr);
  EXPECT_STREQ(add->op, "aten::add");
  EXPECT_EQ(add->native, passes::NativeLowering::kBinary);
  EXPECT_STREQ(add->native_op, "quantized::add");
  EXPECT_EQ(rule("add_float_alpha"), add);
  EXPECT_EQ(rule("add_ts"), nullptr);
  EXPECT_EQ(rule("add_alpha2"), nullptr);
  EXPECT_EQ(rule("add_alpha_in"), nullptr);  // alpha unknown until run time
  ASSERT_NE(rule("mul_tt"), nullptr);
  EXPECT_STREQ(rule("mul_tt")->native_op, "quantized::mul");
  EXPECT_EQ(rule("mul_ts"), nullptr);
}

TEST_F(OpRegistry, KindsOfOtherOps) {
  ASSERT_NE(rule("cat"), nullptr);
  EXPECT_EQ(rule("cat")->native, passes::NativeLowering::kCat);
  EXPECT_EQ(rule("gelu"), nullptr);
  ASSERT_NE(rule("relu"), nullptr);
  EXPECT_EQ(rule("relu")->kind, passes::QuantKind::kSameQParams);
  ASSERT_NE(rule("pool"), nullptr);
  EXPECT_EQ(rule("pool")->kind, passes::QuantKind::kSameQParams);
  ASSERT_NE(rule("sigmoid"), nullptr);
  EXPECT_EQ(rule("sigmoid")->kind, passes::QuantKind::kFixedQParams);
  EXPECT_DOUBLE_EQ(rule("sigmoid")->fixed_scale, 1.0 / 256.0);
  EXPECT_EQ(rule("sigmoid")->fixed_zero_point, 0);
  // Non-tensor results never get a rule.
  for (const Node* n : graph_->nodes()) {
    if (n->kind() == c10::prim::Constant || n->kind() == c10::prim::ListConstruct ||
        n->kind() == c10::prim::TupleConstruct) {
      EXPECT_EQ(passes::find_rule(n), nullptr) << *n;
    }
  }
}

TEST_F(OpRegistry, FusableRelu) {
  EXPECT_TRUE(passes::is_fusable_relu(node("relu")));
  EXPECT_FALSE(passes::is_fusable_relu(node("relu6")));
  EXPECT_FALSE(passes::is_fusable_relu(node("gelu")));
  EXPECT_FALSE(passes::is_fusable_relu(node("sigmoid")));
  EXPECT_FALSE(passes::is_fusable_relu(node("conv_const")));
}

TEST(OpRegistryTable, EveryRuleNamesRegisteredOperators) {
  const auto& rules = passes::all_rules();
  ASSERT_FALSE(rules.empty());
  std::set<std::string> seen;
  for (const passes::OpRule& r : rules) {
    SCOPED_TRACE(r.op);
    EXPECT_TRUE(seen.insert(r.op).second) << "duplicate rule";
    EXPECT_FALSE(torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString(r.op)).empty());
    EXPECT_FALSE(r.activations.empty());
    for (const char* native : {r.native_op, r.native_relu_op}) {
      if (native != nullptr) {
        EXPECT_FALSE(torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString(native)).empty()) << native;
      }
    }
    const bool needs_native_op = r.native == passes::NativeLowering::kConv ||
                                 r.native == passes::NativeLowering::kLinear ||
                                 r.native == passes::NativeLowering::kBinary ||
                                 r.native == passes::NativeLowering::kCat ||
                                 r.native == passes::NativeLowering::kQParamsArg;
    if (needs_native_op) {
      EXPECT_NE(r.native_op, nullptr);
    } else if (r.native_op != nullptr) {
      EXPECT_EQ(r.native, passes::NativeLowering::kSameOp);  // a stand-in op on int8 tensors
    }
    if (r.fuses_relu) {
      EXPECT_NE(r.native_relu_op, nullptr);
    }
    const bool has_weight =
        r.native == passes::NativeLowering::kConv || r.native == passes::NativeLowering::kLinear;
    EXPECT_EQ(r.weight >= 0, has_weight);
    if (r.kind == passes::QuantKind::kFixedQParams) {
      EXPECT_GT(r.fixed_scale, 0.0);
    }
    if (r.kind != passes::QuantKind::kInt8) {
      EXPECT_EQ(r.native, passes::NativeLowering::kSameOp);
    }
  }
}

// ---- QConfig -----------------------------------------------------------------------------------

TEST(QConfig, Presets) {
  const auto x86 = passes::QConfig::preset_named("x86");
  EXPECT_EQ(x86.preset, "x86");
  EXPECT_TRUE(x86.activation_reduce_range);
  EXPECT_TRUE(x86.weight_per_channel);
  EXPECT_EQ(x86.activation_observer, "histogram");
  EXPECT_EQ(x86.activation_dtype, c10::kQUInt8);
  EXPECT_EQ(x86.weight_dtype, c10::kQInt8);
  EXPECT_EQ(x86.engine, "onednn");

  const auto fbgemm = passes::QConfig::preset_named("fbgemm");
  EXPECT_EQ(fbgemm.preset, "fbgemm");
  EXPECT_TRUE(fbgemm.activation_reduce_range);
  EXPECT_TRUE(fbgemm.weight_per_channel);

  const auto onednn = passes::QConfig::preset_named("onednn");
  EXPECT_FALSE(onednn.activation_reduce_range);
  EXPECT_TRUE(onednn.weight_per_channel);
  EXPECT_EQ(onednn.engine, "onednn");

  const auto qnnpack = passes::QConfig::preset_named("qnnpack");
  EXPECT_FALSE(qnnpack.activation_reduce_range);
  EXPECT_FALSE(qnnpack.weight_per_channel);
  EXPECT_EQ(qnnpack.engine, "qnnpack");
}

TEST(QConfig, Overrides) {
  const auto q = passes::QConfig::preset_named("onednn;activation_observer=minmax");
  EXPECT_EQ(q.preset, "onednn");
  EXPECT_EQ(q.activation_observer, "minmax");
  EXPECT_FALSE(q.activation_reduce_range);
  EXPECT_TRUE(q.weight_per_channel);

  const auto r = passes::QConfig::preset_named("x86;weight_per_channel=0;activation_reduce_range=false;"
                                                "activation_observer=moving_average_minmax");
  EXPECT_FALSE(r.weight_per_channel);
  EXPECT_FALSE(r.activation_reduce_range);
  EXPECT_EQ(r.activation_observer, "moving_average_minmax");

  EXPECT_TRUE(passes::QConfig::preset_named("qnnpack;weight_per_channel=1").weight_per_channel);
}

TEST(QConfig, ErrorsNameTheBadValue) {
  expect_error_mentions([] { passes::QConfig::preset_named("tensorrt"); }, "'tensorrt'");
  expect_error_mentions([] { passes::QConfig::preset_named(""); }, "x86");
  expect_error_mentions([] { passes::QConfig::preset_named("x86;bins=256"); }, "'bins'");
  expect_error_mentions([] { passes::QConfig::preset_named("x86;activation_observer=percentile"); },
                        "'percentile'");
  expect_error_mentions([] { passes::QConfig::preset_named("x86;minmax"); }, "'minmax'");
}

// A misspelt boolean should be an error like a misspelt key, not silently "false".
TEST(QConfig, BadBooleanOverrideThrows) {
  expect_error_mentions([] { passes::QConfig::preset_named("x86;activation_reduce_range=ture"); }, "'ture'");
  expect_error_mentions([] { passes::QConfig::preset_named("x86;weight_per_channel=yes"); }, "'yes'");
}

TEST(QConfig, SerializeRoundTrip) {
  for (const char* spec : {"x86", "fbgemm", "onednn", "qnnpack", "onednn;activation_observer=minmax",
                           "x86;weight_per_channel=0;activation_reduce_range=0"}) {
    SCOPED_TRACE(spec);
    auto q = passes::QConfig::preset_named(spec);
    q.skip_modules = {"layer4", "fc"};
    q.skip_types = {"LayerNorm", "SEBlock"};
    const auto back = passes::QConfig::deserialize(q.serialize());
    EXPECT_EQ(back.preset, q.preset);
    EXPECT_EQ(back.activation_dtype, q.activation_dtype);
    EXPECT_EQ(back.activation_reduce_range, q.activation_reduce_range);
    EXPECT_EQ(back.activation_observer, q.activation_observer);
    EXPECT_EQ(back.weight_dtype, q.weight_dtype);
    EXPECT_EQ(back.weight_per_channel, q.weight_per_channel);
    EXPECT_EQ(back.engine, q.engine);
    EXPECT_EQ(back.skip_modules, q.skip_modules);
    EXPECT_EQ(back.skip_types, q.skip_types);
    EXPECT_EQ(back.serialize(), q.serialize());
  }
  const auto plain = passes::QConfig::deserialize(passes::QConfig::preset_named("x86").serialize());
  EXPECT_TRUE(plain.skip_modules.empty());
  EXPECT_TRUE(plain.skip_types.empty());
  expect_error_mentions([] { passes::QConfig::deserialize("preset=x86;garbage"); }, "garbage");
}

TEST(QConfig, SkipsWholePathComponentsOnly) {
  passes::QConfig q;
  q.skip_modules = {"layer4", "head.fc"};
  EXPECT_TRUE(q.skips("layer4"));
  EXPECT_TRUE(q.skips("layer4.1.conv2"));
  EXPECT_TRUE(q.skips("head.fc"));
  EXPECT_FALSE(q.skips("layer40.conv"));
  EXPECT_FALSE(q.skips("layer3"));
  EXPECT_FALSE(q.skips("head"));
  EXPECT_FALSE(q.skips("head.fc2"));
  EXPECT_FALSE(q.skips(""));
  EXPECT_FALSE(passes::QConfig{}.skips("layer4"));
}

TEST(QConfig, SkipsModuleClassesOnTheWay) {
  passes::QConfig q;
  q.skip_types = {"SEBlock"};
  EXPECT_TRUE(q.skips("layer1.0.se.fc1", {"ResNet", "BasicBlock", "SEBlock", "Linear"}));
  EXPECT_FALSE(q.skips("layer1.0.conv1", {"ResNet", "BasicBlock", "Conv2d"}));
  EXPECT_FALSE(q.skips("layer1.0.se", {"SEBlock2"}));
  EXPECT_FALSE(q.skips("SEBlock"));
}

}  // namespace
}  // namespace tqx
