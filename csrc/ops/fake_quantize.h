// Declarations of the CPU fake-quantize kernels, shared with the autograd wrappers.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace tqx::ops {

std::tuple<at::Tensor, at::Tensor> fake_quantize_per_tensor_cachemask(const at::Tensor& input, double scale,
                                                                      int64_t zero_point, int64_t quant_min,
                                                                      int64_t quant_max);
std::tuple<at::Tensor, at::Tensor> fake_quantize_per_channel_cachemask(const at::Tensor& input,
                                                                       const at::Tensor& scale,
                                                                       const at::Tensor& zero_point, int64_t axis,
                                                                       int64_t quant_min, int64_t quant_max);
at::Tensor fake_quantize_per_tensor(const at::Tensor& input, double scale, int64_t zero_point,
                                    int64_t quant_min, int64_t quant_max);
at::Tensor fake_quantize_per_channel(const at::Tensor& input, const at::Tensor& scale,
                                     const at::Tensor& zero_point, int64_t axis, int64_t quant_min,
                                     int64_t quant_max);
at::Tensor fake_quantize_learnable_per_tensor(const at::Tensor& input, const at::Tensor& scale,
                                              const at::Tensor& zero_point, int64_t quant_min,
                                              int64_t quant_max, double grad_factor);
at::Tensor fake_quantize_learnable_per_channel(const at::Tensor& input, const at::Tensor& scale,
                                               const at::Tensor& zero_point, int64_t axis, int64_t quant_min,
                                               int64_t quant_max, double grad_factor);
std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quantize_learnable_per_tensor_backward(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t quant_min, int64_t quant_max, double grad_factor);
std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quantize_learnable_per_channel_backward(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t axis, int64_t quant_min, int64_t quant_max, double grad_factor);

}  // namespace tqx::ops
