// A LibTorch-only application over the installed package: calls an operator, then (given model
// files) loads a saved int8 model and quantizes a float one with prepare/calibrate/convert.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/script.h>
#include <torchquantx/api.h>
#include <torchquantx/pipeline.h>

#include <cmath>
#include <cstdio>
#include <string>

namespace {

int check_operator() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("quantx::quantize_per_tensor", "")
                .typed<at::Tensor(const at::Tensor&, double, int64_t, c10::ScalarType, c10::optional<int64_t>,
                                  c10::optional<int64_t>)>();
  const at::Tensor x = at::tensor({-1.0f, 0.25f, 0.75f, 1000.0f});
  const at::Tensor q = op.call(x, 0.5, 10, c10::ScalarType::QUInt8, c10::nullopt, c10::nullopt);
  // Note [Rounding]: -1/0.5 = -2 -> 8; 0.5 -> 0 (half to even) -> 10; 1.5 -> 2 -> 12; saturates at 255.
  const uint8_t expect[4] = {8, 10, 12, 255};
  for (int i = 0; i < 4; ++i) {
    if (q.data_ptr<uint8_t>()[i] != expect[i]) {
      std::printf("FAIL: element %d is %d, expected %d\n", i, q.data_ptr<uint8_t>()[i], expect[i]);
      return 1;
    }
  }
  return 0;
}

// Runs a saved int8 model on ones(1, 3, 16, 16) and prints the output values.
void run_saved_int8(const std::string& path) {
  torch::jit::Module m = torch::jit::load(path);
  const at::Tensor y = m.forward({at::ones({1, 3, 16, 16})}).toTensor().contiguous();
  std::printf("int8 output:");
  for (int64_t i = 0; i < y.numel(); ++i) std::printf(" %.9g", y.data_ptr<float>()[i]);
  std::printf("\n");
}

// prepare -> calibrate -> convert a saved float model, and report the int8 model's SQNR.
int quantize_float_model(const std::string& path) {
  torch::jit::Module model = torch::jit::load(path);
  model.eval();
  torch::jit::Module prepared = torchquantx::prepare(model, "x86");
  for (int i = 0; i < 4; ++i) prepared.forward({at::randn({2, 3, 16, 16})});
  torch::jit::Module q = torchquantx::convert(prepared);  // target "quantx", the default
  const at::Tensor x = at::randn({2, 3, 16, 16});
  const at::Tensor ref = model.forward({x}).toTensor(), out = q.forward({x}).toTensor();
  const double noise = (ref - out).pow(2).sum().item<double>(), signal = ref.pow(2).sum().item<double>();
  const double sqnr = 10.0 * std::log10(signal / noise);
  std::printf("C++ pipeline SQNR %.1f dB\n", sqnr);
  if (torchquantx::summary(q).find("-> quantx::conv2d") == std::string::npos || !(sqnr > 20.0)) {
    std::printf("FAIL: the C++ pipeline did not produce a good int8 model\n");
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("torchquantx %s, kernels %s\n", torchquantx::version().c_str(), torchquantx::active_isa().c_str());
  if (check_operator() != 0) return 1;
  if (argc > 1) run_saved_int8(argv[1]);
  if (argc > 2 && quantize_float_model(argv[2]) != 0) return 1;
  std::printf("OK\n");
  return 0;
}
