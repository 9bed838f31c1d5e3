// The prepare_qat pass from C++: graph shape, trainable parameters, BatchNorm statistics, and
// eval mode equal to the reference model convert produces.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/testing/file_check.h>

#include <string>
#include <vector>

#include "api/pipeline.h"
#include "passes/prepare_qat.h"
#include "test_util.h"

namespace tqx {
namespace {

using testing::error_of;
using testing::make_module;
using torch::jit::Module;
using torch::jit::testing::FileCheck;

// conv -> batch_norm -> relu -> flatten -> linear, with nn-like submodules. Input [N, 3, 6, 6].
Module make_model() {
  Module conv = make_module("Conv");
  conv.register_parameter("weight", at::randn({4, 3, 3, 3}) * 0.3, false);
  conv.register_parameter("bias", at::randn({4}) * 0.1, false);
  conv.define("def forward(self, x):\n  return torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1])\n");
  Module bn = make_module("BN");
  bn.register_parameter("weight", at::rand({4}) + 0.5, false);
  bn.register_parameter("bias", at::randn({4}) * 0.1, false);
  bn.register_buffer("running_mean", at::zeros({4}));
  bn.register_buffer("running_var", at::ones({4}));
  bn.define("def forward(self, x):\n  return torch.batch_norm(x, self.weight, self.bias, self.running_mean, "
            "self.running_var, self.training, 0.1, 1e-5, False)\n");
  Module fc = make_module("Linear");
  fc.register_parameter("weight", at::randn({5, 4 * 36}) * 0.1, false);
  fc.register_parameter("bias", at::randn({5}) * 0.1, false);
  fc.define("def forward(self, x):\n  return torch.linear(x, self.weight, self.bias)\n");
  Module top = make_module("Net");
  top.register_module("conv", conv);
  top.register_module("bn", bn);
  top.register_module("fc", fc);
  top.define("def forward(self, x):\n  y = torch.relu(self.bn.forward(self.conv.forward(x)))\n"
             "  return self.fc.forward(torch.flatten(y, 1))\n");
  return top;
}

at::Tensor run(Module& m, const at::Tensor& x) { return m.forward({x}).toTensor(); }

TEST(PrepareQat, GraphHasFoldedConvBnAndFakeQuantizers) {
  at::manual_seed(0);
  Module model = make_model();
  model.train();
  Module qat = torchquantx::prepare_qat(model, "fbgemm");
  EXPECT_TRUE(qat.is_training());
  FileCheck()
      .check("prim::CallMethod[name=\"forward\"]")
      ->check("quantx::qat_fold_weight")
      ->check("aten::conv2d")
      ->check("quantx::qat_bn_output")
      ->check("aten::relu")
      ->check("prim::CallMethod[name=\"forward\"]")
      ->check("quantx::fake_quantize_weight")
      ->check("aten::linear")
      ->check("prim::CallMethod[name=\"forward\"]")
      ->run(*qat.get_method("forward").graph());
  std::vector<std::string> names;
  for (const auto& p : qat.named_parameters(/*recurse=*/false)) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"conv_weight", "conv_bias", "bn_weight", "bn_bias", "fc_weight",
                                             "fc_bias"}));
}

TEST(PrepareQat, TrainsWeightsAndUpdatesBatchNormStatistics) {
  at::manual_seed(0);
  Module model = make_model();
  model.train();
  Module qat = torchquantx::prepare_qat(model, "x86");
  const at::Tensor mean_before = qat.attr("bn_running_mean").toTensor().clone();
  const at::Tensor out = run(qat, at::randn({8, 3, 6, 6}));
  torch::autograd::backward({out.pow(2).sum()});
  for (const auto& p : qat.named_parameters(/*recurse=*/false)) {
    ASSERT_TRUE(p.value.grad().defined()) << p.name;
    EXPECT_GT(p.value.grad().abs().sum().item<double>(), 0.0) << p.name;
  }
  EXPECT_FALSE(at::equal(mean_before, qat.attr("bn_running_mean").toTensor()));
  // The source model is untouched.
  EXPECT_TRUE(at::equal(model.attr("bn").toModule().attr("running_mean").toTensor(), at::zeros({4})));
}

TEST(PrepareQat, EvalModeIsTheReferenceModel) {
  at::manual_seed(0);
  Module model = make_model();
  model.train();
  Module qat = torchquantx::prepare_qat(model, "x86");
  for (int i = 0; i < 4; ++i) run(qat, at::randn({8, 3, 6, 6}));
  qat.eval();
  Module reference = torchquantx::convert(qat, "reference");
  Module int8 = torchquantx::convert(qat, "quantx");
  const at::Tensor x = at::randn({16, 3, 6, 6});
  at::NoGradGuard no_grad;
  const at::Tensor expected = run(qat, x);
  EXPECT_TRUE(at::equal(run(reference, x), expected));
  const double out_scale = (expected.max() - expected.min()).item<double>() / 127.0;  // x86: 7-bit range
  EXPECT_LE((run(int8, x) - expected).abs().max().item<double>(), out_scale * 1.01);
}

TEST(PrepareQat, LearnableQParamsAreParametersAndConvertUsesThem) {
  at::manual_seed(0);
  Module model = make_model();
  model.train();
  Module qat = torchquantx::prepare_qat(model, "onednn");
  passes::make_learnable(qat);
  FileCheck()
      .check_count("prim::CallMethod[name=\"forward_learnable\"]", 3, /*exactly=*/true)
      ->check_not("prim::CallMethod[name=\"forward\"]")
      ->run(*qat.get_method("forward").graph());
  at::Tensor scale = qat.attr("_tqx_lsq_scale_0").toTensor(), zp = qat.attr("_tqx_lsq_zero_point_0").toTensor();
  EXPECT_EQ(scale.item<float>(), 0.0f);  // unset until the first training batch
  const at::Tensor out = run(qat, at::randn({8, 3, 6, 6}));
  EXPECT_GT(scale.item<float>(), 0.0f);
  torch::autograd::backward({out.pow(2).sum()});
  ASSERT_TRUE(scale.grad().defined());
  EXPECT_NE(scale.grad().item<float>(), 0.0f);
  {
    at::NoGradGuard no_grad;
    scale.fill_(0.05);
    zp.fill_(2.6);  // convert rounds it as forward_learnable does: 3
  }
  qat.eval();
  Module reference = torchquantx::convert(qat, "reference");
  FileCheck()
      .check("prim::Constant[value=0.05")
      ->check("prim::Constant[value=3]")
      ->check("aten::quantize_per_tensor")
      ->run(*reference.get_method("forward").graph());
  const at::Tensor x = at::randn({16, 3, 6, 6});
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(run(reference, x), run(qat, x)));
  EXPECT_NE(error_of([&] { passes::make_learnable(qat); }).find("already learnable"), std::string::npos);
}

TEST(PrepareQat, Errors) {
  Module model = make_model();
  model.eval();
  EXPECT_NE(error_of([&] { torchquantx::prepare_qat(model); }).find("should be in training mode"),
            std::string::npos);
  model.train();
  Module qat = torchquantx::prepare_qat(model);
  run(qat, at::randn({2, 3, 6, 6}));
  EXPECT_NE(error_of([&] { torchquantx::convert(qat); }).find("QAT model is in training mode"), std::string::npos);
}

}  // namespace
}  // namespace tqx
