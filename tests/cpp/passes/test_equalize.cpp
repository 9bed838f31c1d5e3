// Cross-layer equalization: equal per-channel ranges, the float function kept, high-bias
// absorption from BatchNorm, and better per-tensor W8A8 accuracy on an imbalanced model.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/testing/file_check.h>

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "api/pipeline.h"
#include "api/recovery.h"
#include "passes/equalize.h"
#include "test_util.h"

namespace tqx {
namespace {

using testing::error_of;
using testing::make_module;
using testing::relative_error;

using torch::jit::Module;
using torch::jit::Node;
using torch::jit::testing::FileCheck;

// Weights and biases of the conv/linear layers of a (canonicalized) module, in graph order.
std::vector<at::Tensor> weights_of(const Module& m) {
  std::vector<at::Tensor> out;
  for (Node* n : passes::weighted_layers(*m.get_method("forward").graph())) {
    out.push_back(torch::jit::toIValue(n->input(1))->toTensor());
  }
  return out;
}

std::vector<at::Tensor> biases_of(const Module& m) {
  std::vector<at::Tensor> out;
  for (Node* n : passes::weighted_layers(*m.get_method("forward").graph())) {
    const auto b = torch::jit::toIValue(n->input(2));
    out.push_back(b->isTensor() ? b->toTensor() : at::Tensor());
  }
  return out;
}

at::Tensor output_ranges(const at::Tensor& w) { return w.abs().flatten(1).amax(1); }

// Per-input-channel ranges of a conv (groups) or of a linear whose columns come `taps` per channel.
at::Tensor input_ranges(const at::Tensor& w, int64_t groups, int64_t taps = 1) {
  if (w.dim() == 2) return w.abs().reshape({w.size(0), -1, taps}).amax({0, 2});
  const int64_t out = w.size(0), cin = w.size(1);
  return w.abs().flatten(2).amax(2).reshape({groups, out / groups, cin}).amax(1).reshape({-1});
}

std::string report_of(const Module& m) { return m.attr("_tqx_equalized").toStringRef(); }

double sqnr_db(const at::Tensor& got, const at::Tensor& ref) {
  return 10.0 * std::log10(ref.pow(2).sum().item<double>() / (got - ref).pow(2).sum().item<double>());
}

// conv(3->8) -> relu -> conv(8->16, 1x1): channels 0..3 of the first conv are 100x too large and
// the second conv's matching columns 100x too small, so the float function is a balanced one.
Module make_imbalanced(bool relu6 = false) {
  at::manual_seed(41);
  at::Tensor w1 = at::randn({8, 3, 3, 3}) * 0.3, b1 = at::randn({8}) * 0.1;
  at::Tensor w2 = at::randn({16, 8, 1, 1}) * 0.3, b2 = at::randn({16}) * 0.1;
  w1.slice(0, 0, 4).mul_(100);
  b1.slice(0, 0, 4).mul_(100);
  w2.slice(1, 0, 4).div_(100);
  Module m = make_module("Imbalanced");
  m.register_parameter("w1", w1, false);
  m.register_parameter("b1", b1, false);
  m.register_parameter("w2", w2, false);
  m.register_parameter("b2", b2, false);
  m.define(std::string(R"JIT(
def forward(self, x):
    y = torch.conv2d(x, self.w1, self.b1, [1, 1], [1, 1])
    y = )JIT") +
           (relu6 ? "torch.hardtanh(y, 0.0, 6.0)" : "torch.relu(y)") + R"JIT(
    return torch.conv2d(y, self.w2, self.b2)
)JIT");
  m.eval();
  return m;
}

TEST(Equalize, ConvReluConvRangesBecomeEqualAndTheFunctionStays) {
  Module model = make_imbalanced();
  const at::Tensor w1_before = model.attr("w1").toTensor().clone();
  Module eq = torchquantx::equalize(model);
  EXPECT_EQ(report_of(eq).rfind("pairs=1 ", 0), 0u) << report_of(eq);
  FileCheck().check("aten::conv2d")->check("aten::relu")->check("aten::conv2d")->run(*eq.get_method("forward").graph());

  const auto w = weights_of(eq);
  ASSERT_EQ(w.size(), 2u);
  const at::Tensor r1 = output_ranges(w[0]), r2 = input_ranges(w[1], 1);
  EXPECT_TRUE(at::allclose(r1, r2, 1e-5, 0)) << r1 << r2;
  // Before: ranges 100x apart on half the channels; after: each channel's range sqrt(r1 r2).
  EXPECT_GT((output_ranges(w1_before) / input_ranges(model.attr("w2").toTensor(), 1)).max().item<float>(), 1000);

  for (int i = 0; i < 3; ++i) {
    const at::Tensor x = at::randn({2, 3, 12, 12});
    EXPECT_LT(relative_error(eq.forward({x}).toTensor(), model.forward({x}).toTensor()), 1e-5);
  }
  EXPECT_TRUE(at::equal(model.attr("w1").toTensor(), w1_before));  // the input is not changed
}

// conv -> relu -> depthwise conv (padded) -> relu -> 1x1 conv: both pairs share the depthwise
// layer, so the sweeps repeat until every scale is ~1.
TEST(Equalize, DepthwiseChainConverges) {
  at::manual_seed(42);
  Module m = make_module("Mobile");
  at::Tensor w1 = at::randn({8, 3, 3, 3}) * 0.3;
  at::Tensor dw = at::randn({8, 1, 3, 3}) * 0.5;
  at::Tensor w3 = at::randn({12, 8, 1, 1}) * 0.3;
  w1.slice(0, 0, 2).mul_(30);
  dw.slice(0, 4, 6).mul_(0.02);
  w3.slice(1, 6, 8).mul_(20);
  m.register_parameter("w1", w1, false);
  m.register_parameter("dw", dw, false);
  m.register_parameter("dwb", at::randn({8}) * 0.1, false);
  m.register_parameter("w3", w3, false);
  m.define(R"JIT(
def forward(self, x):
    y = torch.relu(torch.conv2d(x, self.w1, None, [2, 2], [1, 1]))
    y = torch.relu(torch.conv2d(y, self.dw, self.dwb, [1, 1], [1, 1], [1, 1], 8))
    return torch.conv2d(y, self.w3)
)JIT");
  m.eval();
  Module eq = torchquantx::equalize(m);
  EXPECT_EQ(report_of(eq).rfind("pairs=2 ", 0), 0u) << report_of(eq);
  const auto w = weights_of(eq);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_TRUE(at::allclose(output_ranges(w[0]), input_ranges(w[1], 8), 1e-4, 0));
  EXPECT_TRUE(at::allclose(output_ranges(w[1]), input_ranges(w[2], 1), 1e-4, 0));
  const at::Tensor x = at::randn({2, 3, 16, 16});
  EXPECT_LT(relative_error(eq.forward({x}).toTensor(), m.forward({x}).toTensor()), 1e-5);
}

// conv -> relu -> max pool -> adaptive average pool -> flatten -> linear: each conv channel owns
// four linear columns.
TEST(Equalize, ConvToLinearThroughPoolingAndFlatten) {
  at::manual_seed(43);
  Module m = make_module("Head");
  at::Tensor w1 = at::randn({6, 3, 3, 3}) * 0.3;
  w1.slice(0, 0, 3).mul_(50);
  m.register_parameter("w1", w1, false);
  m.register_parameter("b1", at::randn({6}), false);
  m.register_parameter("fc", at::randn({5, 24}) * 0.2, false);
  m.register_parameter("fcb", at::randn({5}) * 0.1, false);
  m.define(R"JIT(
def forward(self, x):
    y = torch.relu(torch.conv2d(x, self.w1, self.b1))
    y = torch.max_pool2d(y, [2, 2])
    y = torch.adaptive_avg_pool2d(y, [2, 2])
    return torch.linear(torch.flatten(y, 1), self.fc, self.fcb)
)JIT");
  m.eval();
  Module eq = torchquantx::equalize(m);
  EXPECT_EQ(report_of(eq).rfind("pairs=1 ", 0), 0u) << report_of(eq);
  const auto w = weights_of(eq);
  EXPECT_TRUE(at::allclose(output_ranges(w[0]), input_ranges(w[1], 1, 4), 1e-5, 0));
  const at::Tensor x = at::randn({3, 3, 14, 14});
  EXPECT_LT(relative_error(eq.forward({x}).toTensor(), m.forward({x}).toTensor()), 1e-5);
}

TEST(Equalize, Relu6ChainsAreSkippedUnlessReplacedByRelu) {
  Module model = make_imbalanced(/*relu6=*/true);
  Module kept = torchquantx::equalize(model);
  EXPECT_NE(report_of(kept).find("pairs=0 "), std::string::npos) << report_of(kept);
  EXPECT_NE(report_of(kept).find("relu6_skipped=1"), std::string::npos) << report_of(kept);
  EXPECT_TRUE(at::equal(weights_of(kept)[0], model.attr("w1").toTensor()));

  Module relu = torchquantx::equalize(model, /*relu6_to_relu=*/true);
  EXPECT_NE(report_of(relu).find("relu6_replaced=1"), std::string::npos) << report_of(relu);
  FileCheck().check_not("aten::hardtanh")->check("aten::relu")->run(*relu.get_method("forward").graph());
  const auto w = weights_of(relu);
  EXPECT_TRUE(at::allclose(output_ranges(w[0]), input_ranges(w[1], 1), 1e-5, 0));
  // The function changes only where an activation exceeded 6: compare with the ReLU model.
  Module reference = make_imbalanced(/*relu6=*/false);
  const at::Tensor x = at::randn({2, 3, 12, 12});
  EXPECT_LT(relative_error(relu.forward({x}).toTensor(), reference.forward({x}).toTensor()), 1e-5);
}

TEST(Equalize, IntermediateWithTwoUsesIsLeftAlone) {
  at::manual_seed(44);
  Module m = make_module("TwoUses");
  at::Tensor w1 = at::randn({4, 4, 1, 1});
  w1.slice(0, 0, 2).mul_(100);
  m.register_parameter("w1", w1, false);
  m.register_parameter("w2", at::randn({4, 4, 1, 1}), false);
  m.define(R"JIT(
def forward(self, x):
    y = torch.relu(torch.conv2d(x, self.w1))
    return torch.conv2d(y, self.w2) + y
)JIT");
  m.eval();
  Module eq = torchquantx::equalize(m);
  EXPECT_EQ(report_of(eq).rfind("pairs=0 ", 0), 0u) << report_of(eq);
  EXPECT_TRUE(at::equal(weights_of(eq)[0], w1));
}

// conv -> BatchNorm (statistics of the data, large beta) -> relu -> 1x1 conv.
TEST(Equalize, HighBiasIsAbsorbedFromBatchNormStatistics) {
  at::manual_seed(45);
  const at::Tensor data = at::randn({16, 3, 12, 12});
  const at::Tensor w1 = at::randn({8, 3, 3, 3}) * 0.3;
  const at::Tensor y = at::conv2d(data, w1, {}, 1, 1);
  const at::Tensor beta = at::tensor({4.0f, 3.0f, 0.5f, -1.0f, 5.0f, 2.0f, 0.0f, 6.0f});
  const at::Tensor gamma = at::full({8}, 0.5f);
  Module m = make_module("BnNet");
  m.register_parameter("w1", w1, false);
  m.register_parameter("gamma", gamma, false);
  m.register_parameter("beta", beta, false);
  m.register_buffer("mean", y.mean({0, 2, 3}));
  m.register_buffer("var", y.var({0, 2, 3}, /*unbiased=*/false));
  m.register_parameter("w2", at::randn({10, 8, 1, 1}) * 0.3, false);
  m.register_parameter("b2", at::randn({10}) * 0.1, false);
  m.define(R"JIT(
def forward(self, x):
    y = torch.conv2d(x, self.w1, None, [1, 1], [1, 1])
    y = torch.batch_norm(y, self.gamma, self.beta, self.mean, self.var, self.training, 0.1, 1e-05, False)
    return torch.conv2d(torch.relu(y), self.w2, self.b2)
)JIT");
  m.eval();

  Module plain = torchquantx::equalize(m, false, /*absorb_high_bias=*/false);
  Module absorbed = torchquantx::equalize(m);
  EXPECT_NE(report_of(absorbed).find("absorbed=1"), std::string::npos) << report_of(absorbed);
  // Layer 1's bias lost max(0, beta - 3|gamma|) (in equalized units): channels 0, 1, 4, 5, 7.
  const at::Tensor drop = biases_of(plain)[0] - biases_of(absorbed)[0];
  const at::Tensor expected_positive = at::tensor({1, 1, 0, 0, 1, 1, 0, 1}).to(at::kBool);
  EXPECT_TRUE(at::equal(drop.gt(1e-6), expected_positive)) << drop;
  // The float function changes only where a pre-activation fell below beta - 3|gamma| (here
  // ~0.2%: the border pixels of the padded conv make the tails heavier than a Gaussian's).
  const at::Tensor pre = (y - m.attr("mean").toTensor().reshape({1, 8, 1, 1})) /
                             (m.attr("var").toTensor().reshape({1, 8, 1, 1}) + 1e-5).sqrt() * 0.5 +
                         beta.reshape({1, 8, 1, 1});
  const double below = pre.lt((beta - 1.5).clamp_min(0).reshape({1, 8, 1, 1}))
                           .logical_and(pre.gt(0))
                           .to(at::kFloat)
                           .mean()
                           .item<double>();
  std::cout << "[ equalize ] pre-activations below beta - 3|gamma|: " << below * 100 << "%\n";
  const at::Tensor ref = m.forward({data}).toTensor();
  EXPECT_LT(relative_error(plain.forward({data}).toTensor(), ref), 1e-5);
  EXPECT_LT(relative_error(absorbed.forward({data}).toTensor(), ref), 1e-2);

  // The statistics travel with the equalized module (for analytic bias correction), rescaled.
  const auto stats = absorbed.attr("_tqx_preactivation").toGenericDict();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats.begin()->value().toTensor().sizes(), (std::vector<int64_t>{2, 8}));
}

// The point of equalization: per-tensor W8A8 quantization of the imbalanced model is poor,
// of the equalized one good. Numbers are printed for the record.
TEST(Equalize, ImprovesPerTensorW8A8Accuracy) {
  Module model = make_imbalanced();
  const std::string qconfig = "x86;weight_per_channel=0";
  auto quantize = [&](const Module& m) {
    Module prepared = torchquantx::prepare(m, qconfig);
    at::manual_seed(46);
    for (int i = 0; i < 4; ++i) prepared.forward({at::randn({4, 3, 12, 12})});
    return torchquantx::convert(prepared);
  };
  Module q_plain = quantize(model);
  Module q_eq = quantize(torchquantx::equalize(model));
  at::manual_seed(47);
  const at::Tensor x = at::randn({8, 3, 12, 12});
  const at::Tensor ref = model.forward({x}).toTensor();
  const double before = sqnr_db(q_plain.forward({x}).toTensor(), ref);
  const double after = sqnr_db(q_eq.forward({x}).toTensor(), ref);
  std::cout << "[ equalize ] per-tensor W8A8 SQNR vs fp32: " << before << " dB -> " << after << " dB\n";
  RecordProperty("sqnr_before_db", std::to_string(before));
  RecordProperty("sqnr_after_db", std::to_string(after));
  EXPECT_GT(after, before + 10.0);
}

TEST(Equalize, RejectsPreparedAndTrainingModels) {
  Module model = make_imbalanced();
  Module prepared = torchquantx::prepare(model);
  EXPECT_NE(error_of([&] { torchquantx::equalize(prepared); }).find("already prepared"), std::string::npos);
  model.train();
  EXPECT_NE(error_of([&] { torchquantx::equalize(model); }).find("eval mode"), std::string::npos);
}

TEST(Equalize, ResultCanBeEqualizedAndPreparedAgain) {
  Module model = make_imbalanced();
  Module once = torchquantx::equalize(model);
  Module twice = torchquantx::equalize(once);
  const auto a = weights_of(once), b = weights_of(twice);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::allclose(a[i], b[i], 1e-5, 1e-7));
  Module prepared = torchquantx::prepare(twice);
  const at::Tensor x = at::randn({2, 3, 12, 12});
  EXPECT_LT(relative_error(prepared.forward({x}).toTensor(), model.forward({x}).toTensor()), 1e-5);
}

}  // namespace
}  // namespace tqx
