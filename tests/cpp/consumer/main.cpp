// Calls torchquantx from C++ through the installed CMake package: no Python involved.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/tensor.h>
#include <torchquantx/api.h>

#include <cstdio>

int main() {
  std::printf("torchquantx %s, kernels %s\n", torchquantx::version().c_str(), torchquantx::active_isa().c_str());
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
  std::printf("OK\n");
  return 0;
}
