// quantx fake-quantize operators (forward kernels and LSQ backward) for the CPU key; autograd
// wiring lives in fake_quantize_autograd.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "kernels/fake_quantize_grad.h"
#include "kernels/quantize.h"
#include "ops/common.h"
#include "ops/fake_quantize.h"

namespace tqx::ops {
namespace {

void check_fake_args(const char* op, const at::Tensor& input, int64_t qmin, int64_t qmax) {
  check_float(op, "input", input);
  check_qrange(op, qmin, qmax);
}

// Runs the fake-quantize kernel per tensor; mask_out may be undefined.
void run_per_tensor(const at::Tensor& x, at::Tensor& out, at::Tensor* mask, const kernels::AffineParams& p) {
  const auto& k = kernels::quantize_kernels();
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  uint8_t* m = mask ? reinterpret_cast<uint8_t*>(mask->data_ptr<bool>()) : nullptr;
  parallel_chunks(x.numel(), [&](int64_t b, int64_t e) {
    k.f32_fake_quantize(e - b, src + b, dst + b, m ? m + b : nullptr, p);
  });
}

void run_per_channel(const at::Tensor& x, at::Tensor& out, at::Tensor* mask, const ChannelView& v,
                     const float* scales, const int64_t* zps, int64_t qmin, int64_t qmax) {
  const auto& k = kernels::quantize_kernels();
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  uint8_t* m = mask ? reinterpret_cast<uint8_t*>(mask->data_ptr<bool>()) : nullptr;
  parallel_rows(v, [&](int64_t o, int64_t c) {
    const int64_t off = (o * v.channels + c) * v.inner;
    k.f32_fake_quantize(v.inner, src + off, dst + off, m ? m + off : nullptr, affine(scales[c], zps[c], qmin, qmax));
  });
}

// Reads a one-element float qparam tensor (LSQ keeps scale and zero point as parameters).
float scalar_of(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK(t.defined() && t.numel() == 1, op, ": ", arg, " should be a one-element tensor, got ",
              t.defined() ? t.sizes() : c10::IntArrayRef{});
  TORCH_CHECK(c10::isFloatingType(t.scalar_type()), op, ": ", arg, " should be a floating-point tensor, got ",
              dtype_name(t.scalar_type()));
  return t.detach().to(c10::kFloat).item<float>();
}

float learnable_scale(const char* op, const at::Tensor& scale) {
  const float s = scalar_of(op, "scale", scale);
  TORCH_CHECK(std::isfinite(s) && s > 0.0f && std::isfinite(1.0f / s), op,
              ": scale should be finite and > 0 (a learnable scale that went <= 0 usually means the "
              "learning rate is too high), got ", s);
  return s;
}

// PyTorch rounds a learnable zero point differently in forward (nearbyint) and backward (+0.5,
// truncated); both then clamp to [qmin, qmax]. We keep both rules so gradients match.
int64_t learnable_zero_point(const char* op, const at::Tensor& zero_point, int64_t qmin, int64_t qmax,
                             bool forward) {
  float z = scalar_of(op, "zero_point", zero_point);
  TORCH_CHECK(std::isfinite(z), op, ": zero_point should be finite, got ", z);
  z = forward ? std::nearbyint(z) : z + 0.5f;
  z = std::min(std::max(z, static_cast<float>(qmin)), static_cast<float>(qmax));
  return static_cast<int64_t>(z);
}

at::Tensor learnable_channel_zero_points(const char* op, const at::Tensor& zero_point, int64_t channels,
                                         int64_t qmin, int64_t qmax) {
  TORCH_CHECK(zero_point.defined() && c10::isFloatingType(zero_point.scalar_type()), op,
              ": zero_point should be a floating-point tensor, got ",
              zero_point.defined() ? dtype_name(zero_point.scalar_type()) : "None");
  at::Tensor z = check_channel_vector(op, "zero_point", zero_point.detach(), channels, c10::kFloat);
  at::Tensor out = at::empty({channels}, z.options().dtype(c10::kLong));
  const float* zp = z.data_ptr<float>();
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t c = 0; c < channels; ++c) {
    TORCH_CHECK(std::isfinite(zp[c]), op, ": zero_point should be finite, got zero_point[", c, "] = ", zp[c]);
    o[c] = static_cast<int64_t>(std::min(std::max(std::nearbyint(zp[c]), static_cast<float>(qmin)),
                                         static_cast<float>(qmax)));
  }
  return out;
}

at::Tensor learnable_channel_scales(const char* op, const at::Tensor& scale, int64_t channels) {
  TORCH_CHECK(scale.defined() && c10::isFloatingType(scale.scalar_type()), op,
              ": scale should be a floating-point tensor, got ",
              scale.defined() ? dtype_name(scale.scalar_type()) : "None");
  at::Tensor s = check_channel_vector(op, "scale", scale.detach(), channels, c10::kFloat);
  const float* sp = s.data_ptr<float>();
  for (int64_t c = 0; c < channels; ++c) {
    TORCH_CHECK(std::isfinite(sp[c]) && sp[c] > 0.0f && std::isfinite(1.0f / sp[c]), op,
                ": scale should be finite and > 0, got scale[", c, "] = ", sp[c]);
  }
  return s;
}

}  // namespace

namespace {

std::tuple<at::Tensor, at::Tensor> per_tensor_impl(const at::Tensor& input, double scale, int64_t zero_point,
                                                   int64_t quant_min, int64_t quant_max, bool want_mask) {
  constexpr const char* op = "quantx::fake_quantize_per_tensor";
  check_fake_args(op, input, quant_min, quant_max);
  check_scale(op, scale);
  check_zero_point(op, zero_point, quant_min, quant_max);
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor mask;
  if (want_mask) mask = at::empty(x.sizes(), x.options().dtype(c10::kBool));
  run_per_tensor(x, out, want_mask ? &mask : nullptr, affine(scale, zero_point, quant_min, quant_max));
  return {out, mask};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> fake_quantize_per_tensor_cachemask(const at::Tensor& input, double scale,
                                                                      int64_t zero_point, int64_t quant_min,
                                                                      int64_t quant_max) {
  return per_tensor_impl(input, scale, zero_point, quant_min, quant_max, true);
}

at::Tensor fake_quantize_per_tensor(const at::Tensor& input, double scale, int64_t zero_point,
                                    int64_t quant_min, int64_t quant_max) {
  return std::get<0>(per_tensor_impl(input, scale, zero_point, quant_min, quant_max, false));
}

namespace {

std::tuple<at::Tensor, at::Tensor> per_channel_impl(const at::Tensor& input, const at::Tensor& scale,
                                                    const at::Tensor& zero_point, int64_t axis,
                                                    int64_t quant_min, int64_t quant_max, bool want_mask) {
  constexpr const char* op = "quantx::fake_quantize_per_channel";
  check_fake_args(op, input, quant_min, quant_max);
  axis = check_axis(op, input, axis);
  const at::Tensor x = input.contiguous();
  const ChannelView v = channel_view(x, axis);
  at::Tensor sc, zp;
  check_channel_qparams(op, scale, zero_point, v.channels, quant_min, quant_max, &sc, &zp);
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor mask;
  if (want_mask) mask = at::empty(x.sizes(), x.options().dtype(c10::kBool));
  run_per_channel(x, out, want_mask ? &mask : nullptr, v, sc.data_ptr<float>(), zp.data_ptr<int64_t>(),
                  quant_min, quant_max);
  return {out, mask};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> fake_quantize_per_channel_cachemask(const at::Tensor& input,
                                                                       const at::Tensor& scale,
                                                                       const at::Tensor& zero_point, int64_t axis,
                                                                       int64_t quant_min, int64_t quant_max) {
  return per_channel_impl(input, scale, zero_point, axis, quant_min, quant_max, true);
}

at::Tensor fake_quantize_per_channel(const at::Tensor& input, const at::Tensor& scale,
                                     const at::Tensor& zero_point, int64_t axis, int64_t quant_min,
                                     int64_t quant_max) {
  return std::get<0>(per_channel_impl(input, scale, zero_point, axis, quant_min, quant_max, false));
}

at::Tensor fake_quantize_learnable_per_tensor(const at::Tensor& input, const at::Tensor& scale,
                                              const at::Tensor& zero_point, int64_t quant_min,
                                              int64_t quant_max, double grad_factor) {
  constexpr const char* op = "quantx::fake_quantize_learnable_per_tensor";
  check_fake_args(op, input, quant_min, quant_max);
  const float s = learnable_scale(op, scale);
  const int64_t zp = learnable_zero_point(op, zero_point, quant_min, quant_max, /*forward=*/true);
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  run_per_tensor(x, out, nullptr, affine(s, zp, quant_min, quant_max));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quantize_learnable_per_tensor_backward(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t quant_min, int64_t quant_max, double grad_factor) {
  constexpr const char* op = "quantx::fake_quantize_learnable_per_tensor (backward)";
  check_fake_args(op, input, quant_min, quant_max);
  check_float(op, "grad", grad);
  TORCH_CHECK(grad.sizes() == input.sizes(), op, ": grad should have the input's shape ", input.sizes(),
              ", got ", grad.sizes());
  const float s = learnable_scale(op, scale);
  const int64_t zp = learnable_zero_point(op, zero_point, quant_min, quant_max, /*forward=*/false);
  const at::Tensor x = input.contiguous();
  const at::Tensor dy = grad.contiguous();
  at::Tensor dx = at::empty(x.sizes(), x.options());
  at::Tensor ds = at::empty(x.sizes(), x.options());
  at::Tensor dz = at::empty(x.sizes(), x.options());
  const kernels::LearnableGradParams p{s, 1.0f / s, zp, quant_min, quant_max, static_cast<float>(grad_factor)};
  const float* xp = x.data_ptr<float>();
  const float* gp = dy.data_ptr<float>();
  float* dxp = dx.data_ptr<float>();
  float* dsp = ds.data_ptr<float>();
  float* dzp = dz.data_ptr<float>();
  const auto& k = kernels::fake_quantize_grad_kernels();
  parallel_chunks(x.numel(), [&](int64_t b, int64_t e) {
    k.f32_fake_quantize_learnable_grad(e - b, xp + b, gp + b, dxp + b, dsp + b, dzp + b, p);
  });
  // Sum the per-element terms with ATen's reduction, as PyTorch does.
  at::Tensor dscale = at::sum(ds).unsqueeze(0).to(scale.scalar_type());
  at::Tensor dzero = at::sum(dz).unsqueeze(0).to(zero_point.scalar_type());
  return {dx, dscale.reshape(scale.sizes()), dzero.reshape(zero_point.sizes())};
}

at::Tensor fake_quantize_learnable_per_channel(const at::Tensor& input, const at::Tensor& scale,
                                               const at::Tensor& zero_point, int64_t axis, int64_t quant_min,
                                               int64_t quant_max, double grad_factor) {
  constexpr const char* op = "quantx::fake_quantize_learnable_per_channel";
  check_fake_args(op, input, quant_min, quant_max);
  axis = check_axis(op, input, axis);
  const at::Tensor x = input.contiguous();
  const ChannelView v = channel_view(x, axis);
  const at::Tensor sc = learnable_channel_scales(op, scale, v.channels);
  const at::Tensor zp = learnable_channel_zero_points(op, zero_point, v.channels, quant_min, quant_max);
  at::Tensor out = at::empty(x.sizes(), x.options());
  run_per_channel(x, out, nullptr, v, sc.data_ptr<float>(), zp.data_ptr<int64_t>(), quant_min, quant_max);
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quantize_learnable_per_channel_backward(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t axis, int64_t quant_min, int64_t quant_max, double grad_factor) {
  constexpr const char* op = "quantx::fake_quantize_learnable_per_channel (backward)";
  check_fake_args(op, input, quant_min, quant_max);
  check_float(op, "grad", grad);
  TORCH_CHECK(grad.sizes() == input.sizes(), op, ": grad should have the input's shape ", input.sizes(),
              ", got ", grad.sizes());
  axis = check_axis(op, input, axis);
  const at::Tensor x = input.contiguous();
  const at::Tensor dy = grad.contiguous();
  const ChannelView v = channel_view(x, axis);
  const at::Tensor sc = learnable_channel_scales(op, scale, v.channels);
  const at::Tensor zp = learnable_channel_zero_points(op, zero_point, v.channels, quant_min, quant_max);
  at::Tensor dx = at::empty(x.sizes(), x.options());
  at::Tensor ds = at::empty(x.sizes(), x.options());
  at::Tensor dz = at::empty(x.sizes(), x.options());
  const float* sp = sc.data_ptr<float>();
  const int64_t* zpp = zp.data_ptr<int64_t>();
  const float gf = static_cast<float>(grad_factor);
  const float* xp = x.data_ptr<float>();
  const float* gp = dy.data_ptr<float>();
  float* dxp = dx.data_ptr<float>();
  float* dsp = ds.data_ptr<float>();
  float* dzp = dz.data_ptr<float>();
  const auto& k = kernels::fake_quantize_grad_kernels();
  parallel_rows(v, [&](int64_t o, int64_t c) {
    const int64_t off = (o * v.channels + c) * v.inner;
    const kernels::LearnableGradParams p{sp[c], 1.0f / sp[c], zpp[c], quant_min, quant_max, gf};
    k.f32_fake_quantize_learnable_grad(v.inner, xp + off, gp + off, dxp + off, dsp + off, dzp + off, p);
  });
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d != axis) dims.push_back(d);
  }
  at::Tensor dscale = dims.empty() ? ds : at::sum(ds, dims);
  at::Tensor dzero = dims.empty() ? dz : at::sum(dz, dims);
  return {dx, dscale.to(scale.scalar_type()).reshape(scale.sizes()),
          dzero.to(zero_point.scalar_type()).reshape(zero_point.sizes())};
}

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("fake_quantize_per_tensor(Tensor input, float scale, int zero_point, int quant_min, "
        "int quant_max) -> Tensor");
  m.def("fake_quantize_per_channel(Tensor input, Tensor scale, Tensor zero_point, int axis, "
        "int quant_min, int quant_max) -> Tensor");
  m.def("fake_quantize_learnable_per_tensor(Tensor input, Tensor scale, Tensor zero_point, "
        "int quant_min, int quant_max, float grad_factor=1.0) -> Tensor");
  m.def("fake_quantize_learnable_per_channel(Tensor input, Tensor scale, Tensor zero_point, int axis, "
        "int quant_min, int quant_max, float grad_factor=1.0) -> Tensor");
  m.def("_fake_quantize_per_tensor_cachemask(Tensor input, float scale, int zero_point, int quant_min, "
        "int quant_max) -> (Tensor output, Tensor mask)");
  m.def("_fake_quantize_per_channel_cachemask(Tensor input, Tensor scale, Tensor zero_point, int axis, "
        "int quant_min, int quant_max) -> (Tensor output, Tensor mask)");
  m.def("_fake_quantize_learnable_per_tensor_backward(Tensor grad, Tensor input, Tensor scale, "
        "Tensor zero_point, int quant_min, int quant_max, float grad_factor) -> (Tensor, Tensor, Tensor)");
  m.def("_fake_quantize_learnable_per_channel_backward(Tensor grad, Tensor input, Tensor scale, "
        "Tensor zero_point, int axis, int quant_min, int quant_max, float grad_factor) "
        "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(quantx, CPU, m) {
  m.impl("fake_quantize_per_tensor", fake_quantize_per_tensor);
  m.impl("fake_quantize_per_channel", fake_quantize_per_channel);
  m.impl("fake_quantize_learnable_per_tensor", fake_quantize_learnable_per_tensor);
  m.impl("fake_quantize_learnable_per_channel", fake_quantize_learnable_per_channel);
  m.impl("_fake_quantize_per_tensor_cachemask", fake_quantize_per_tensor_cachemask);
  m.impl("_fake_quantize_per_channel_cachemask", fake_quantize_per_channel_cachemask);
  m.impl("_fake_quantize_learnable_per_tensor_backward", fake_quantize_learnable_per_tensor_backward);
  m.impl("_fake_quantize_learnable_per_channel_backward", fake_quantize_learnable_per_channel_backward);
}

}  // namespace tqx::ops
