// AdaRound: the learned rounding beats round-to-nearest on every layer's output, the weights land
// on the grid convert reproduces bit for bit, the input module is untouched, misuse is reported.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>

#include <string>
#include <vector>

#include "api/pipeline.h"
#include "api/recovery.h"
#include "passes/adaround.h"
#include "passes/equalize.h"
#include "passes/weights.h"
#include "test_util.h"

namespace tqx {
namespace {

using testing::error_of;
using torch::jit::Module;

Module conv_net() {
  at::manual_seed(0);
  Module m = testing::make_module("AdaNet");
  m.register_parameter("w1", at::randn({8, 3, 3, 3}).mul(0.3), false);
  m.register_parameter("b1", at::randn({8}).mul(0.1), false);
  m.register_parameter("w2", at::randn({16, 8, 3, 3}).mul(0.2), false);
  m.register_parameter("b2", at::randn({16}).mul(0.1), false);
  m.register_parameter("w3", at::randn({10, 16}).mul(0.3), false);
  m.define(R"(
    def forward(self, x):
        y = torch.relu(torch.conv2d(x, self.w1, self.b1, [1, 1], [1, 1]))
        y = torch.relu(torch.conv2d(y, self.w2, self.b2, [2, 2], [1, 1]))
        return torch.linear(y.mean([2, 3]), self.w3)
  )");
  m.eval();
  return m;
}

std::vector<std::vector<c10::IValue>> batches() {
  std::vector<std::vector<c10::IValue>> out;
  for (int i = 0; i < 3; ++i) out.push_back({at::randn({8, 3, 12, 12})});
  return out;
}

std::vector<at::Tensor> weights_of(const Module& m) {
  std::vector<at::Tensor> out;
  for (auto* n : passes::weighted_layers(*m.get_method("forward").graph())) {
    out.push_back(torch::jit::toIValue(n->input(1))->toTensor());
  }
  return out;
}

TEST(AdaRound, BeatsNearestAndLandsOnConvertsGrid) {
  const Module prepared = torchquantx::prepare(conv_net(), "x86;weight_bits=4");
  torchquantx::AdaRoundOptions opt;
  opt.iters = 300;
  const Module rounded = torchquantx::adaround(prepared, batches(), "", opt);
  const std::string report = rounded.attr("_tqx_adaround").toStringRef();
  EXPECT_EQ(std::count(report.begin(), report.end(), '\n'), 3) << report;
  EXPECT_EQ(report.find("kept round-to-nearest"), std::string::npos) << report;
  const auto before = weights_of(prepared), after = weights_of(rounded);
  ASSERT_EQ(after.size(), 3u);
  const passes::WeightSpec spec{4, true, true};
  for (size_t i = 0; i < after.size(); ++i) {
    const auto q0 = passes::quantize_weight(before[i], spec), q1 = passes::quantize_weight(after[i], spec);
    EXPECT_TRUE(q0.scale.equal(q1.scale));  // the qparams convert chooses are unchanged
    // Every element but each channel's min and max is exactly its dequantized grid value.
    const at::Tensor w = after[i].flatten(1);
    const at::Tensor inner = w.gt(std::get<0>(w.min(1, true))).logical_and(w.lt(std::get<0>(w.max(1, true))));
    EXPECT_TRUE(q1.dequantize().flatten(1).masked_select(inner).equal(w.masked_select(inner)));
    EXPECT_FALSE(q0.values.equal(q1.values));  // some weights rounded the other way
  }
  // The input module keeps its weights.
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(before[i].equal(weights_of(prepared)[i]));
}

TEST(AdaRound, WeightOptimisationBeatsNearest) {
  at::manual_seed(1);
  const at::Tensor w = at::randn({6, 12});
  const at::Tensor rows = at::randn({1, 512, 12});
  for (int64_t bits : {4, 8}) {
    torchquantx::AdaRoundOptions opt;
    opt.iters = 300;
    const auto r = passes::adaround_weight(w, rows, {bits, false, false}, opt);  // per-tensor affine too
    EXPECT_LT(r.mse_adaround, r.mse_nearest) << bits;
  }
}

TEST(AdaRound, MisuseNamesTheArgument) {
  const Module m = conv_net();
  EXPECT_NE(error_of([&] { torchquantx::adaround(m, {}); }).find("batches should hold at least one batch"),
            std::string::npos);
  torchquantx::AdaRoundOptions bad;
  bad.max_rows = 0;
  EXPECT_NE(error_of([&] { torchquantx::adaround(m, batches(), "", bad); }).find("max_rows should be >= 1, got 0"),
            std::string::npos);
  const Module prepared = torchquantx::prepare(m, "x86");
  EXPECT_NE(error_of([&] { torchquantx::adaround(prepared, batches(), "qnnpack"); }).find("got 'qnnpack'"),
            std::string::npos);
}

}  // namespace
}  // namespace tqx
