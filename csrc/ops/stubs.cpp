// quantx::quant_stub / quantx::dequant_stub: identity markers that survive inlining, so that
// prepare can honour eager-style QuantStub/DeQuantStub regions. convert removes them.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

namespace tqx::ops {
namespace {

at::Tensor identity(const at::Tensor& x) { return x; }

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("quant_stub(Tensor(a) input) -> Tensor(a)");
  m.def("dequant_stub(Tensor(a) input) -> Tensor(a)");
}

TORCH_LIBRARY_IMPL(quantx, CompositeImplicitAutograd, m) {
  m.impl("quant_stub", identity);
  m.impl("dequant_stub", identity);
}

}  // namespace tqx::ops
