// The C++ pipeline end to end, no Python: prepare, calibrate, convert, save, load and run.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/csrc/jit/testing/file_check.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "api/api.h"
#include "api/pipeline.h"
#include "test_util.h"

namespace tqx {
namespace {

using testing::error_of;
using testing::has_attr_with_prefix;
using testing::make_module;
using testing::relative_error;

using torch::jit::Module;
using torch::jit::testing::FileCheck;

// conv + batch_norm + relu -> conv -> residual add -> global average pool -> linear head.
// Input [N, 3, 16, 16], output [N, 5].
Module make_model() {
  Module features = make_module("Features");
  features.register_parameter("w1", at::randn({8, 3, 3, 3}) * 0.3, false);
  features.register_parameter("bn_weight", at::rand({8}) + 0.5, false);
  features.register_parameter("bn_bias", at::randn({8}) * 0.1, false);
  features.register_buffer("running_mean", at::randn({8}) * 0.1);
  features.register_buffer("running_var", at::rand({8}) + 0.5);
  features.register_parameter("w2", at::randn({8, 8, 3, 3}) * 0.12, false);
  features.register_parameter("b2", at::randn({8}) * 0.1, false);
  features.define(R"JIT(
def forward(self, x):
    y = torch.conv2d(x, self.w1, None, [2, 2], [1, 1])
    y = torch.batch_norm(y, self.bn_weight, self.bn_bias, self.running_mean, self.running_var,
                         self.training, 0.1, 1e-05, False)
    y = torch.relu(y)
    return torch.conv2d(y, self.w2, self.b2, [1, 1], [1, 1]) + y
)JIT");
  Module head = make_module("Head");
  head.register_parameter("weight", at::randn({5, 8}) * 0.3, false);
  head.register_parameter("bias", at::randn({5}) * 0.1, false);
  head.define("def forward(self, x):\n    return torch.linear(x, self.weight, self.bias)\n");
  Module model = make_module("Model");
  model.register_module("features", features);
  model.register_module("head", head);
  model.define(R"JIT(
def forward(self, x):
    y = torch.adaptive_avg_pool2d(self.features.forward(x), [1, 1])
    return self.head.forward(torch.flatten(y, 1))
)JIT");
  model.eval();
  return model;
}

void calibrate(Module& prepared) {
  for (int i = 0; i < 4; ++i) prepared.forward({at::randn({4, 3, 16, 16})});
}

// A file under the test temp directory, removed when the test ends.
class TempFile {
 public:
  explicit TempFile(const std::string& name)
      : path_(::testing::TempDir() + "tqx_" + std::to_string(::getpid()) + "_" + name) {}
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

at::Tensor unpacked_weight(const Module& converted, const std::string& attr) {
  const c10::IValue packed = converted.attr(attr);
  const auto out = packed.toObject()->type()->getMethod("unpack")({packed});
  return out.toTupleRef().elements()[0].toTensor();
}

TEST(Pipeline, PrepareCalibrateConvertSaveLoadRun) {
  at::manual_seed(30);
  Module model = make_model();
  Module prepared = torchquantx::prepare(model, "x86");
  calibrate(prepared);
  const std::string prepared_summary = torchquantx::summary(prepared);
  EXPECT_NE(prepared_summary.find("_tqx_obs_0  observes input 'x'"), std::string::npos) << prepared_summary;
  EXPECT_NE(prepared_summary.find("batches=4"), std::string::npos) << prepared_summary;

  Module converted = torchquantx::convert(prepared, "native");
  const std::string summary = torchquantx::summary(converted);
  EXPECT_EQ(summary.rfind("target=native\n", 0), 0u) << summary;
  EXPECT_NE(summary.find("features  aten::conv2d + aten::relu -> quantized::conv2d_relu"), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("quantized::conv2d "), std::string::npos) << summary;
  EXPECT_NE(summary.find("head  aten::linear -> quantized::linear"), std::string::npos) << summary;

  TempFile file("pipeline.pt");
  converted.save(file.path());
  Module loaded = torch::jit::load(file.path());
  const auto graph = loaded.get_method("forward").graph();
  FileCheck()
      .check_count("aten::quantize_per_tensor", 1, /*exactly=*/true)
      ->check("quantized::conv2d_relu")
      ->check("quantized::conv2d")
      ->check("quantized::add")
      ->check("aten::adaptive_avg_pool2d")
      ->check("quantized::linear")
      ->check("aten::dequantize")
      ->run(*graph);
  FileCheck().check_not("prim::CallMethod")->check_not("aten::batch_norm")->check_not("aten::conv2d")->run(*graph);
  EXPECT_FALSE(has_attr_with_prefix(loaded, "_tqx_obs_"));
  EXPECT_EQ(torchquantx::summary(loaded), summary);

  for (int i = 0; i < 3; ++i) {
    const at::Tensor x = at::randn({2 + i, 3, 16, 16});
    const at::Tensor in_memory = converted.forward({x}).toTensor();
    const at::Tensor reloaded = loaded.forward({x}).toTensor();
    EXPECT_TRUE(at::equal(reloaded, in_memory)) << (reloaded - in_memory).abs().max().item<float>();
    EXPECT_LT(relative_error(in_memory, model.forward({x}).toTensor()), 0.1);
  }
}

TEST(Pipeline, PrepareLeavesTheModelAlone) {
  at::manual_seed(31);
  Module model = make_model();
  const std::string before = model.get_method("forward").graph()->toString();
  const at::Tensor x = at::randn({2, 3, 16, 16});
  const at::Tensor out = model.forward({x}).toTensor();
  Module prepared = torchquantx::prepare(model);
  EXPECT_EQ(model.get_method("forward").graph()->toString(), before);
  EXPECT_FALSE(has_attr_with_prefix(model, "_tqx_"));
  EXPECT_TRUE(at::equal(model.forward({x}).toTensor(), out));
  EXPECT_TRUE(at::allclose(prepared.forward({x}).toTensor(), out, 1e-5, 1e-5));
}

TEST(Pipeline, ConvertLeavesThePreparedModuleAlone) {
  at::manual_seed(32);
  Module prepared = torchquantx::prepare(make_model());
  calibrate(prepared);
  const std::string before = torchquantx::summary(prepared);
  Module a = torchquantx::convert(prepared);
  Module b = torchquantx::convert(prepared);
  EXPECT_EQ(torchquantx::summary(prepared), before);
  const at::Tensor x = at::randn({2, 3, 16, 16});
  EXPECT_TRUE(at::equal(a.forward({x}).toTensor(), b.forward({x}).toTensor()));
}

TEST(Pipeline, PresetsChooseWeightSchemeAndRestoreTheEngine) {
  at::manual_seed(33);
  Module model = make_model();
  const at::QEngine engine = at::globalContext().qEngine();
  for (const char* preset : {"x86", "onednn", "qnnpack"}) {
    SCOPED_TRACE(preset);
    Module prepared = torchquantx::prepare(model, preset);
    calibrate(prepared);
    Module converted = torchquantx::convert(prepared, "native");
    EXPECT_EQ(at::globalContext().qEngine(), engine);
    const at::Tensor w = unpacked_weight(converted, "_tqx_packed_0");
    EXPECT_EQ(w.qscheme(), std::string(preset) == "qnnpack" ? at::kPerTensorAffine : at::kPerChannelAffine);
    const at::Tensor x = at::randn({4, 3, 16, 16});
    EXPECT_LT(relative_error(converted.forward({x}).toTensor(), model.forward({x}).toTensor()), 0.1);
  }
}

TEST(Pipeline, ReferenceTargetAndSkippedModules) {
  at::manual_seed(34);
  Module model = make_model();
  Module prepared = torchquantx::prepare(model, "x86", {"head"});
  calibrate(prepared);
  Module reference = torchquantx::convert(prepared, "reference");
  EXPECT_EQ(torchquantx::summary(reference).rfind("target=reference\n", 0), 0u);
  FileCheck()
      .check("aten::quantize_per_tensor")
      ->check("aten::dequantize")
      ->check("aten::conv2d")
      ->check_not("quantized::")
      ->run(*reference.get_method("forward").graph());

  Module native = torchquantx::convert(prepared, "native");
  const std::string summary = torchquantx::summary(native);
  EXPECT_NE(summary.find("head  aten::linear -> float (skipped by request)"), std::string::npos) << summary;
  FileCheck()
      .check("quantized::conv2d_relu")
      ->check("aten::dequantize")
      ->check("aten::linear")
      ->check_not("quantized::linear")
      ->run(*native.get_method("forward").graph());
  const at::Tensor x = at::randn({4, 3, 16, 16});
  const at::Tensor expected = model.forward({x}).toTensor();
  EXPECT_LT(relative_error(reference.forward({x}).toTensor(), expected), 0.1);
  EXPECT_LT(relative_error(native.forward({x}).toTensor(), expected), 0.1);
}

TEST(Pipeline, ErrorsSayWhatToDo) {
  at::manual_seed(35);
  Module model = make_model();
  std::string msg = error_of([&] { torchquantx::convert(model); });
  EXPECT_NE(msg.find("call prepare first"), std::string::npos) << msg;

  Module prepared = torchquantx::prepare(model);
  msg = error_of([&] { torchquantx::convert(prepared); });
  EXPECT_NE(msg.find("saw no data"), std::string::npos) << msg;

  calibrate(prepared);
  Module converted = torchquantx::convert(prepared);
  msg = error_of([&] { torchquantx::convert(converted); });
  EXPECT_NE(msg.find("already converted"), std::string::npos) << msg;
  msg = error_of([&] { torchquantx::convert(prepared, "tensorrt"); });
  EXPECT_NE(msg.find("'tensorrt'"), std::string::npos) << msg;
  msg = error_of([&] { torchquantx::prepare(model, "avx"); });
  EXPECT_NE(msg.find("'avx'"), std::string::npos) << msg;
  msg = error_of([&] { torchquantx::summary(model); });
  EXPECT_NE(msg.find("neither prepared nor converted"), std::string::npos) << msg;

  model.train();
  msg = error_of([&] { torchquantx::prepare(model); });
  EXPECT_NE(msg.find("eval"), std::string::npos) << msg;
}

TEST(Pipeline, LibraryVersion) { EXPECT_FALSE(torchquantx::version().empty()); }

}  // namespace
}  // namespace tqx
