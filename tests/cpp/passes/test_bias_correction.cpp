// Bias correction: the corrected bias follows the formula, the quantized model's mean output error
// shrinks (empirical and analytic), the input is never changed, and misuse is reported.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "api/pipeline.h"
#include "api/recovery.h"
#include "passes/equalize.h"
#include "passes/weights.h"
#include "test_util.h"

namespace tqx {
namespace {

using testing::error_of;
using testing::make_module;

using torch::jit::Module;
using torch::jit::Node;

// Per-tensor weights: the few large output channels set the scale and the small ones round
// coarsely, with a bias that does not average out.
const std::string kPerTensor = "x86;weight_per_channel=0";

std::vector<at::Tensor> biases_of(const Module& m) {
  std::vector<at::Tensor> out;
  for (Node* n : passes::weighted_layers(*m.get_method("forward").graph())) {
    const auto b = torch::jit::toIValue(n->input(2));
    out.push_back(b->isTensor() ? b->toTensor() : at::Tensor());
  }
  return out;
}

std::vector<std::vector<c10::IValue>> make_batches(int64_t n, int64_t seed) {
  at::manual_seed(seed);
  std::vector<std::vector<c10::IValue>> out;
  for (int64_t i = 0; i < n; ++i) out.push_back({at::rand({8, 3, 12, 12})});  // mean 0.5: E[x] matters
  return out;
}

// conv(3->16) -> relu -> conv(16->16, 1x1) whose first two output channels are 40x larger.
// With batchnorm, the first conv is followed by a BatchNorm with statistics of the data.
Module make_model(bool batchnorm = false) {
  at::manual_seed(51);
  Module m = make_module("Net");
  const at::Tensor w1 = at::randn({16, 3, 3, 3}) * 0.3;
  at::Tensor w2 = at::randn({16, 16, 1, 1}) * 0.2;
  w2.slice(0, 0, 2).mul_(40);
  m.register_parameter("w1", w1, false);
  m.register_parameter("b1", at::randn({16}) * 0.1, false);
  m.register_parameter("w2", w2, false);
  m.register_parameter("b2", at::randn({16}) * 0.1, false);
  if (!batchnorm) {
    m.define(R"JIT(
def forward(self, x):
    return torch.conv2d(torch.relu(torch.conv2d(x, self.w1, self.b1, [1, 1], [1, 1])), self.w2, self.b2)
)JIT");
  } else {
    const at::Tensor y = at::conv2d(at::rand({64, 3, 12, 12}), w1, m.attr("b1").toTensor(), 1, 1);
    m.register_parameter("gamma", at::rand({16}) + 0.5, false);
    m.register_parameter("beta", at::randn({16}), false);
    m.register_buffer("mean", y.mean({0, 2, 3}));
    m.register_buffer("var", y.var({0, 2, 3}, /*unbiased=*/false));
    m.define(R"JIT(
def forward(self, x):
    y = torch.conv2d(x, self.w1, self.b1, [1, 1], [1, 1])
    y = torch.batch_norm(y, self.gamma, self.beta, self.mean, self.var, self.training, 0.1, 1e-05, False)
    return torch.conv2d(torch.relu(y), self.w2, self.b2)
)JIT");
  }
  m.eval();
  return m;
}

struct Errors {
  double mean_error;  // mean over output channels of |mean output error|
  double sqnr_db;
};

// Calibrates `prepared`, converts it and measures it against `model` on held-out data.
Errors quantized_errors(Module prepared, Module model) {
  for (const auto& batch : make_batches(4, 52)) prepared.forward(batch);
  Module q = torchquantx::convert(prepared);
  double mean_error = 0, signal = 0, noise = 0;
  for (const auto& batch : make_batches(4, 53)) {
    const at::Tensor ref = model.forward(batch).toTensor(), got = q.forward(batch).toTensor();
    mean_error += (got - ref).mean({0, 2, 3}).abs().mean().item<double>() / 4;
    signal += ref.pow(2).sum().item<double>();
    noise += (got - ref).pow(2).sum().item<double>();
  }
  return {mean_error, 10 * std::log10(signal / noise)};
}

TEST(BiasCorrection, EmpiricalCorrectionShrinksTheMeanOutputError) {
  Module model = make_model();
  Module prepared = torchquantx::prepare(model, kPerTensor);
  Module corrected = torchquantx::bias_correction(prepared, make_batches(4, 54));
  const Errors before = quantized_errors(prepared, model);
  const Errors after = quantized_errors(corrected, model);
  std::cout << "[ bias_correction ] per-tensor W8A8: mean output error " << before.mean_error << " -> "
            << after.mean_error << ", SQNR " << before.sqnr_db << " dB -> " << after.sqnr_db << " dB\n";
  EXPECT_LT(after.mean_error, 0.3 * before.mean_error);
  EXPECT_GT(after.sqnr_db, before.sqnr_db);
}

TEST(BiasCorrection, TheCorrectionIsTheQuantizationErrorTimesTheInputMean) {
  at::manual_seed(55);
  Module m = make_module("Linear");
  const at::Tensor w = at::randn({6, 5}), b = at::randn({6});
  m.register_parameter("w", w, false);
  m.register_parameter("b", b, false);
  m.define("def forward(self, x):\n    return torch.linear(x, self.w, self.b)\n");
  m.eval();
  const at::Tensor x = at::randn({40, 5}) + at::arange(5).to(at::kFloat);
  Module corrected = torchquantx::bias_correction(m, {{x}}, "qnnpack");
  const at::Tensor dw = passes::quantize_weight_int8(w, /*per_channel=*/false).dequantize() - w;
  const at::Tensor expected = b - at::mv(dw.to(at::kDouble), x.to(at::kDouble).mean(0)).to(at::kFloat);
  EXPECT_TRUE(at::allclose(biases_of(corrected)[0], expected, 1e-6, 1e-6));
}

TEST(BiasCorrection, ThePreparedModuleIsNotChanged) {
  Module prepared = torchquantx::prepare(make_model(), kPerTensor);
  const auto before = biases_of(prepared);
  Module corrected = torchquantx::bias_correction(prepared, make_batches(2, 56));
  const auto after = biases_of(prepared), changed = biases_of(corrected);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(at::equal(before[i], after[i]));
  EXPECT_FALSE(at::equal(before[1], changed[1]));
  EXPECT_TRUE(corrected.hasattr("_tqx_qconfig"));
}

TEST(BiasCorrection, ProbeThenApplyEqualsOneShot) {
  Module prepared = torchquantx::prepare(make_model(), kPerTensor);
  const auto batches = make_batches(3, 57);
  Module one_shot = torchquantx::bias_correction(prepared, batches);
  Module probe = torchquantx::bias_correction_probe(prepared);
  std::vector<at::Tensor> sums;
  std::vector<int64_t> counts;
  for (const auto& batch : batches) {
    const auto out = probe.forward(batch).toTuple();
    const auto s = out->elements()[0].toTensorVector();
    const auto c = out->elements()[1].toIntVector();
    if (sums.empty()) {
      sums = s;
      counts = c;
    } else {
      for (size_t i = 0; i < s.size(); ++i) {
        sums[i] = sums[i] + s[i];
        counts[i] += c[i];
      }
    }
  }
  ASSERT_EQ(sums.size(), 2u);
  EXPECT_EQ(counts[0], 3 * 8 * 12 * 12);
  std::vector<at::Tensor> means;
  for (size_t i = 0; i < sums.size(); ++i) means.push_back(sums[i] / static_cast<double>(counts[i]));
  Module streamed = torchquantx::bias_correction_apply(prepared, means);
  const auto a = biases_of(one_shot), b = biases_of(streamed);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i]));
  // The probe's run recorded nothing in the prepared module's observers.
  EXPECT_EQ(torchquantx::summary(prepared).find("batches=3"), std::string::npos) << torchquantx::summary(prepared);
}

// A float model corrected first, then prepared with the same qconfig.
TEST(BiasCorrection, FloatModelThenPrepare) {
  Module model = make_model();
  Module corrected = torchquantx::bias_correction(model, make_batches(4, 58), kPerTensor);
  const Errors before = quantized_errors(torchquantx::prepare(model, kPerTensor), model);
  const Errors after = quantized_errors(torchquantx::prepare(corrected, kPerTensor), model);
  EXPECT_LT(after.mean_error, 0.3 * before.mean_error);
}

TEST(BiasCorrection, AnalyticFromBatchNormStatistics) {
  Module model = make_model(/*batchnorm=*/true);
  Module analytic = torchquantx::bias_correction_analytic(model, kPerTensor);
  Module empirical = torchquantx::bias_correction(model, make_batches(8, 59), kPerTensor);
  const Errors before = quantized_errors(torchquantx::prepare(model, kPerTensor), model);
  const Errors after = quantized_errors(torchquantx::prepare(analytic, kPerTensor), model);
  std::cout << "[ bias_correction_analytic ] per-tensor W8A8: mean output error " << before.mean_error << " -> "
            << after.mean_error << ", SQNR " << before.sqnr_db << " dB -> " << after.sqnr_db << " dB\n";
  EXPECT_LT(after.mean_error, 0.5 * before.mean_error);
  // The first conv reads the model input (nothing known): unchanged. The second agrees with the
  // empirical correction to within the Gaussian assumption.
  Module plain = torchquantx::bias_correction_apply(model, {at::Tensor(), at::Tensor()}, kPerTensor);
  const auto p = biases_of(plain), a = biases_of(analytic), e = biases_of(empirical);
  EXPECT_TRUE(at::equal(p[0], a[0]));
  const at::Tensor da = a[1] - p[1], de = e[1] - p[1];
  EXPECT_LT((da - de).norm().item<double>(), 0.2 * de.norm().item<double>()) << da << de;

  // equalize keeps the (rescaled) statistics, so the data-free pipeline chains and its
  // correction again agrees with the empirical one on the equalized model.
  Module equalized = torchquantx::equalize(model);
  const Errors eq_only = quantized_errors(torchquantx::prepare(equalized, kPerTensor), model);
  Module eq_then_bc = torchquantx::bias_correction_analytic(equalized, kPerTensor);
  const Errors chained = quantized_errors(torchquantx::prepare(eq_then_bc, kPerTensor), model);
  std::cout << "[ equalize + bias_correction_analytic ] mean output error " << eq_only.mean_error << " -> "
            << chained.mean_error << ", SQNR " << eq_only.sqnr_db << " dB -> " << chained.sqnr_db << " dB\n";
  EXPECT_LT(chained.mean_error, 0.8 * eq_only.mean_error);
  const auto pe = biases_of(equalized), ae = biases_of(eq_then_bc);
  const auto ee = biases_of(torchquantx::bias_correction(equalized, make_batches(8, 59), kPerTensor));
  const at::Tensor dae = ae[1] - pe[1], dee = ee[1] - pe[1];
  EXPECT_LT((dae - dee).norm().item<double>(), 0.2 * dee.norm().item<double>()) << dae << dee;
}

TEST(BiasCorrection, MisuseIsReported) {
  Module model = make_model();
  Module prepared = torchquantx::prepare(model);
  EXPECT_NE(error_of([&] {
              torchquantx::bias_correction(prepared, make_batches(1, 60), "qnnpack");
            }).find("carries its own qconfig"),
            std::string::npos);
  EXPECT_NE(error_of([&] { torchquantx::bias_correction(prepared, {}); }).find("at least one batch"),
            std::string::npos);
  EXPECT_NE(error_of([&] { torchquantx::bias_correction_analytic(prepared); }).find("BatchNorm statistics"),
            std::string::npos);
  for (const auto& b : make_batches(1, 61)) prepared.forward(b);
  Module converted = torchquantx::convert(prepared);
  EXPECT_NE(error_of([&] { torchquantx::bias_correction(converted, make_batches(1, 62)); }).find("already converted"),
            std::string::npos);
  EXPECT_NE(error_of([&] { torchquantx::bias_correction_apply(prepared, {at::zeros({3})}); }).find("one tensor per"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              torchquantx::bias_correction_apply(prepared, {at::zeros({4}), at::zeros({16})});
            }).find("should have 3 values"),
            std::string::npos);
}

}  // namespace
}  // namespace tqx
