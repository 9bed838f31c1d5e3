// Autograd kernels of the fake-quantize operators: the straight-through estimator and LSQ.
// The only operator file that includes the (heavy) autograd headers.
#include <ATen/ops/where.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "ops/fake_quantize.h"

namespace tqx::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool needs_grad(const at::Tensor& t) { return at::GradMode::is_enabled() && t.requires_grad(); }

// grad where the mask is set, 0 elsewhere: one pass (grad * mask first converts the bool mask to
// float, a second full pass that cost QAT steps several percent).
at::Tensor pass_through(const at::Tensor& grad, const at::Tensor& mask) { return at::where(mask, grad, 0.0); }

// STE: the gradient passes where the value was inside the clamping range, zero elsewhere.
class FakeQuantizePerTensorFn : public torch::autograd::Function<FakeQuantizePerTensorFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, double scale, int64_t zero_point,
                            int64_t quant_min, int64_t quant_max) {
    auto [out, mask] = fake_quantize_per_tensor_cachemask(input, scale, zero_point, quant_min, quant_max);
    ctx->save_for_backward({mask});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor mask = ctx->get_saved_variables()[0];
    return {pass_through(grads[0], mask), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class FakeQuantizePerChannelFn : public torch::autograd::Function<FakeQuantizePerChannelFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t axis, int64_t quant_min, int64_t quant_max) {
    auto [out, mask] = fake_quantize_per_channel_cachemask(input, scale, zero_point, axis, quant_min, quant_max);
    ctx->save_for_backward({mask});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor mask = ctx->get_saved_variables()[0];
    return {pass_through(grads[0], mask), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// LSQ: gradients for the input (STE), the scale and the zero point.
class FakeQuantizeLearnablePerTensorFn : public torch::autograd::Function<FakeQuantizeLearnablePerTensorFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                            double grad_factor) {
    ctx->save_for_backward({input, scale, zero_point});
    ctx->saved_data["quant_min"] = quant_min;
    ctx->saved_data["quant_max"] = quant_max;
    ctx->saved_data["grad_factor"] = grad_factor;
    return fake_quantize_learnable_per_tensor(input, scale, zero_point, quant_min, quant_max, grad_factor);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [dx, ds, dz] = fake_quantize_learnable_per_tensor_backward(
        grads[0], saved[0], saved[1], saved[2], ctx->saved_data["quant_min"].toInt(),
        ctx->saved_data["quant_max"].toInt(), ctx->saved_data["grad_factor"].toDouble());
    return {dx, ds, dz, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class FakeQuantizeLearnablePerChannelFn : public torch::autograd::Function<FakeQuantizeLearnablePerChannelFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t axis, int64_t quant_min, int64_t quant_max,
                            double grad_factor) {
    ctx->save_for_backward({input, scale, zero_point});
    ctx->saved_data["axis"] = axis;
    ctx->saved_data["quant_min"] = quant_min;
    ctx->saved_data["quant_max"] = quant_max;
    ctx->saved_data["grad_factor"] = grad_factor;
    return fake_quantize_learnable_per_channel(input, scale, zero_point, axis, quant_min, quant_max, grad_factor);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [dx, ds, dz] = fake_quantize_learnable_per_channel_backward(
        grads[0], saved[0], saved[1], saved[2], ctx->saved_data["axis"].toInt(),
        ctx->saved_data["quant_min"].toInt(), ctx->saved_data["quant_max"].toInt(),
        ctx->saved_data["grad_factor"].toDouble());
    return {dx, ds, dz, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor per_tensor_autograd(const at::Tensor& input, double scale, int64_t zero_point, int64_t quant_min,
                               int64_t quant_max) {
  if (!needs_grad(input)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return fake_quantize_per_tensor(input, scale, zero_point, quant_min, quant_max);
  }
  return FakeQuantizePerTensorFn::apply(input, scale, zero_point, quant_min, quant_max);
}

at::Tensor per_channel_autograd(const at::Tensor& input, const at::Tensor& scale, const at::Tensor& zero_point,
                                int64_t axis, int64_t quant_min, int64_t quant_max) {
  if (!needs_grad(input)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return fake_quantize_per_channel(input, scale, zero_point, axis, quant_min, quant_max);
  }
  return FakeQuantizePerChannelFn::apply(input, scale, zero_point, axis, quant_min, quant_max);
}

at::Tensor learnable_per_tensor_autograd(const at::Tensor& input, const at::Tensor& scale,
                                         const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                                         double grad_factor) {
  if (!needs_grad(input) && !needs_grad(scale) && !needs_grad(zero_point)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return fake_quantize_learnable_per_tensor(input, scale, zero_point, quant_min, quant_max, grad_factor);
  }
  return FakeQuantizeLearnablePerTensorFn::apply(input, scale, zero_point, quant_min, quant_max, grad_factor);
}

at::Tensor learnable_per_channel_autograd(const at::Tensor& input, const at::Tensor& scale,
                                          const at::Tensor& zero_point, int64_t axis, int64_t quant_min,
                                          int64_t quant_max, double grad_factor) {
  if (!needs_grad(input) && !needs_grad(scale) && !needs_grad(zero_point)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return fake_quantize_learnable_per_channel(input, scale, zero_point, axis, quant_min, quant_max, grad_factor);
  }
  return FakeQuantizeLearnablePerChannelFn::apply(input, scale, zero_point, axis, quant_min, quant_max,
                                                  grad_factor);
}

}  // namespace

TORCH_LIBRARY_IMPL(quantx, Autograd, m) {
  m.impl("fake_quantize_per_tensor", per_tensor_autograd);
  m.impl("fake_quantize_per_channel", per_channel_autograd);
  m.impl("fake_quantize_learnable_per_tensor", learnable_per_tensor_autograd);
  m.impl("fake_quantize_learnable_per_channel", learnable_per_channel_autograd);
}

}  // namespace tqx::ops
