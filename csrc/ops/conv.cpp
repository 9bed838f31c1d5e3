// quantx::conv2d / quantx::linear / quantx::add on PyTorch quint8 tensors (NHWC inside), and
// PackedConv: weights packed once at convert time, saved and reloaded with the model.
#include <ATen/core/Tensor.h>
#include <ATen/ops/_empty_affine_quantized.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/conv.h"
#include "ops/common.h"

namespace tqx::ops {
namespace {

constexpr int64_t kPackedVersion = 1;

// int8 weights (symmetric, per output channel) of a convolution or linear layer. The kernel
// layout is OHWI; the saved state keeps the PyTorch layout (OIHW), so it is independent of it.
class PackedConv : public torch::CustomClassHolder {
 public:
  PackedConv(at::Tensor weight, at::Tensor scales, c10::optional<at::Tensor> bias, std::vector<int64_t> stride,
             std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t groups)
      : weight_(std::move(weight)), scales_(std::move(scales)), stride_(std::move(stride)),
        padding_(std::move(padding)), dilation_(std::move(dilation)), groups_(groups) {
    constexpr const char* op = "quantx::conv_prepack";
    TORCH_CHECK(weight_.scalar_type() == c10::kChar && (weight_.dim() == 4 || weight_.dim() == 2), op,
                ": weight should be a 2-D (linear) or 4-D (conv2d) torch.int8 tensor, got ", dtype_name(weight_.scalar_type()),
                " of shape ", weight_.sizes());
    const int64_t oc = weight_.size(0);
    scales_ = check_channel_vector(op, "scales", scales_, oc, c10::kFloat);
    bias_ = bias && bias->defined() ? check_channel_vector(op, "bias", *bias, oc, c10::kFloat)
                                    : at::zeros({oc}, at::TensorOptions().dtype(c10::kFloat));
    TORCH_CHECK(groups_ >= 1 && oc % groups_ == 0, op, ": groups should divide the ", oc, " output channels, got ",
                groups_);
    for (const auto* v : {&stride_, &padding_, &dilation_}) {
      TORCH_CHECK(v->size() == 2, op, ": stride, padding and dilation should have 2 values, got ", v->size());
    }
    TORCH_CHECK(stride_[0] >= 1 && stride_[1] >= 1 && dilation_[0] >= 1 && dilation_[1] >= 1 && padding_[0] >= 0 &&
                    padding_[1] >= 0,
                op, ": stride and dilation should be >= 1 and padding >= 0, got stride ", stride_, ", padding ",
                padding_, ", dilation ", dilation_);
    const at::Tensor w4 = weight_.dim() == 2 ? weight_.view({oc, weight_.size(1), 1, 1}) : weight_;
    const at::Tensor ohwi = w4.permute({0, 2, 3, 1}).contiguous();
    packed_ = kernels::pack_conv_weights(ohwi.data_ptr<int8_t>(), oc, ohwi.size(1), ohwi.size(2), ohwi.size(3),
                                         groups_);
  }

  bool is_linear() const { return weight_.dim() == 2; }
  int64_t out_channels() const { return weight_.size(0); }
  int64_t in_channels_per_group() const { return weight_.size(1); }

  // The float multipliers of one set of scales and the kernels' epilogue vectors made from them.
  // A layer meets the same scales on every call, so the last set is kept: remaking it cost
  // mobilenet_v2 a few percent (allocations, and a pass over the channels per thread).
  struct Requant {
    double x_scale, y_scale, r_scale;
    bool residual;
    std::vector<float> mult, bias;
    float residual_mult;
    kernels::PreparedEpilogue prepared;
  };

  // What the kernel needs for NHWC uint8 data (x_shape [N, H, W, C]): the shape and epilogue, and
  // the prepared epilogue vectors they point into (kept alive by rq). Outputs are clamped to
  // [relu ? y_zp : 0, qmax] (ReLU / ReLU6 / clamp). residual (optional) has y's layout and qparams
  // (r_scale, r_zp); it is added before the single rounding of the epilogue.
  struct Call {
    kernels::ConvShape shape;
    kernels::ConvEpilogue epilogue;
    std::shared_ptr<const Requant> rq;
  };
  Call call(const std::array<int64_t, 4>& x_shape, double x_scale, int64_t x_zp, double y_scale, int64_t y_zp,
            bool relu, int64_t qmax, int64_t out_h, int64_t out_w, const uint8_t* residual = nullptr,
            double r_scale = 1.0, int64_t r_zp = 0) const {
    Call c{kernels::ConvShape{x_shape[0], x_shape[1], x_shape[2], x_shape[3], out_h, out_w, out_channels(),
                              packed_.kernel_h, packed_.kernel_w, stride_[0], stride_[1], padding_[0], padding_[1],
                              dilation_[0], dilation_[1], groups_},
           {}, requant(x_scale, y_scale, residual != nullptr, r_scale)};
    c.epilogue = kernels::ConvEpilogue{static_cast<int32_t>(x_zp),   c.rq->mult.data(),
                                       c.rq->bias.data(),             static_cast<int32_t>(y_zp),
                                       relu ? static_cast<int32_t>(y_zp) : 0, static_cast<int32_t>(qmax)};
    if (residual != nullptr) {
      c.epilogue.residual = residual;
      c.epilogue.residual_multiplier = c.rq->residual_mult;
      c.epilogue.residual_zero_point = static_cast<int32_t>(r_zp);
    }
    return c;
  }
  kernels::ConvStep step(const Call& c) const { return {c.shape, packed_, c.epilogue, &c.rq->prepared}; }

  // Runs the kernel on NHWC uint8 data (arguments as for call()).
  void run(const uint8_t* x, const std::array<int64_t, 4>& x_shape, double x_scale, int64_t x_zp, double y_scale,
           int64_t y_zp, bool relu, int64_t qmax, uint8_t* y, int64_t out_h, int64_t out_w,
           const uint8_t* residual = nullptr, double r_scale = 1.0, int64_t r_zp = 0) const {
    const Call c = call(x_shape, x_scale, x_zp, y_scale, y_zp, relu, qmax, out_h, out_w, residual, r_scale, r_zp);
    // Pixels are split over the intra-op pool; each pixel is computed the same way by any thread.
    const int64_t pixels = c.shape.batch * c.shape.out_h * c.shape.out_w;
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 17) / macs_per_pixel());
    const kernels::Isa isa = kernels::active_isa();
    at::parallel_for(0, pixels, grain, [&](int64_t begin, int64_t end) {
      kernels::conv2d_u8s8_nhwc_packed(c.shape, packed_, x, c.epilogue, y, begin, end, isa, &c.rq->prepared);
    });
  }

  int64_t macs_per_pixel() const { return std::max<int64_t>(1, out_channels() * packed_.k); }
  // 1x1, stride 1, no padding, one group: what conv2d_pair takes as its first step.
  bool is_pointwise() const {
    return !is_linear() && packed_.kernel_h == 1 && packed_.kernel_w == 1 && stride_[0] == 1 && stride_[1] == 1 &&
           padding_[0] == 0 && padding_[1] == 0 && groups_ == 1;
  }
  std::string geometry() const {
    std::ostringstream os;
    os << "kernel " << packed_.kernel_h << "x" << packed_.kernel_w << ", stride " << c10::IntArrayRef(stride_)
       << ", padding " << c10::IntArrayRef(padding_) << ", groups " << groups_;
    return os.str();
  }
  int64_t groups() const { return groups_; }

  int64_t out_size(int64_t in, int dim) const {
    return kernels::conv_out_size(in, dim == 0 ? packed_.kernel_h : packed_.kernel_w, stride_[dim], padding_[dim],
                                  dilation_[dim]);
  }

  using State = std::tuple<int64_t, at::Tensor, at::Tensor, at::Tensor, std::vector<int64_t>, std::vector<int64_t>,
                           std::vector<int64_t>, int64_t>;
  State state() const { return {kPackedVersion, weight_, scales_, bias_, stride_, padding_, dilation_, groups_}; }
  static c10::intrusive_ptr<PackedConv> from_state(State s) {
    TORCH_CHECK(std::get<0>(s) == kPackedVersion, "quantx PackedConv: saved state has version ", std::get<0>(s),
                ", this torchquantx reads version ", kPackedVersion);
    return c10::make_intrusive<PackedConv>(std::get<1>(s), std::get<2>(s), std::get<3>(s), std::get<4>(s),
                                           std::get<5>(s), std::get<6>(s), std::get<7>(s));
  }

 private:
  std::shared_ptr<const Requant> requant(double x_scale, double y_scale, bool residual, double r_scale) const {
    {
      std::lock_guard<std::mutex> lock(requant_mutex_);
      const std::shared_ptr<const Requant>& c = requant_;
      if (c && c->x_scale == x_scale && c->y_scale == y_scale && c->residual == residual &&
          (!residual || c->r_scale == r_scale)) {
        return c;
      }
    }
    auto r = std::make_shared<Requant>();
    r->x_scale = x_scale;
    r->y_scale = y_scale;
    r->r_scale = r_scale;
    r->residual = residual;
    const int64_t oc = out_channels();
    r->mult.resize(oc);
    r->bias.resize(oc);
    const float* ws = scales_.data_ptr<float>();
    const float* b = bias_.data_ptr<float>();
    const float inv_y = 1.0f / static_cast<float>(y_scale);
    for (int64_t c = 0; c < oc; ++c) {
      r->mult[c] = static_cast<float>(x_scale) * ws[c] * inv_y;
      r->bias[c] = b[c] * inv_y;
    }
    r->residual_mult = static_cast<float>(r_scale) * inv_y;
    kernels::ConvEpilogue e{0, r->mult.data(), r->bias.data(), 0, 0, 255};
    static const uint8_t kAnyResidual = 0;  // prepare_epilogue only asks whether there is one
    if (residual) {
      e.residual = &kAnyResidual;
      e.residual_multiplier = r->residual_mult;
    }
    r->prepared = kernels::prepare_epilogue(packed_, e);
    std::lock_guard<std::mutex> lock(requant_mutex_);
    requant_ = r;
    return r;
  }

  at::Tensor weight_, scales_, bias_;
  kernels::PackedConvWeights packed_;
  mutable std::mutex requant_mutex_;
  mutable std::shared_ptr<const Requant> requant_;
  std::vector<int64_t> stride_, padding_, dilation_;
  int64_t groups_;
};

using PackedPtr = c10::intrusive_ptr<PackedConv>;

void check_quint8(const char* op, const char* arg, const at::Tensor& q) {
  TORCH_CHECK(q.defined() && q.scalar_type() == c10::kQUInt8 && q.qscheme() == c10::kPerTensorAffine, op, ": ", arg,
              " should be a per-tensor quint8 quantized tensor, got ",
              q.defined() ? dtype_name(q.scalar_type()) : "None");
}

// The upper clamp of a fused ReLU6 / clamp: at most 255, and not below the lower one.
void check_qmax(const char* op, int64_t qmax, int64_t zero_point, bool relu) {
  const int64_t lo = relu ? zero_point : 0;
  TORCH_CHECK(qmax >= lo && qmax <= 255, op, ": qmax should be in [", lo, ", 255], got ", qmax);
}

// The channels-last input of a convolution op, its sizes, and the output tensor it writes:
// `packed` gives the output channels and spatial sizes.
struct ConvIO {
  at::Tensor x, y;
  int64_t n, c, h, w, oh, ow;
};
ConvIO conv_io(const char* op, const at::Tensor& qx, const PackedConv& packed, double scale, int64_t zero_point) {
  ConvIO io;
  io.x = qx.contiguous(c10::MemoryFormat::ChannelsLast);
  io.n = io.x.size(0), io.c = io.x.size(1), io.h = io.x.size(2), io.w = io.x.size(3);
  io.oh = packed.out_size(io.h, 0), io.ow = packed.out_size(io.w, 1);
  TORCH_CHECK(io.oh > 0 && io.ow > 0, op, ": input of spatial size ", io.h, "x", io.w, " is too small for the kernel");
  io.y = empty_quantized({io.n, packed.out_channels(), io.oh, io.ow}, io.x.options(), scale, zero_point,
                                     c10::MemoryFormat::ChannelsLast);
  return io;
}

at::Tensor conv2d(const at::Tensor& qx, const PackedPtr& packed, double scale, int64_t zero_point, bool relu,
                  int64_t qmax) {
  constexpr const char* op = "quantx::conv2d";
  check_quint8(op, "qx", qx);
  TORCH_CHECK(!packed->is_linear(), op, ": packed weights are a linear layer's; use quantx::linear");
  TORCH_CHECK(qx.dim() == 4, op, ": qx should be 4-D (N, C, H, W), got shape ", qx.sizes());
  check_scale(op, scale);
  check_zero_point(op, zero_point, 0, 255);
  check_qmax(op, qmax, zero_point, relu);
  const int64_t groups_c = packed->in_channels_per_group();
  TORCH_CHECK(qx.size(1) % groups_c == 0, op, ": qx has ", qx.size(1), " channels, the weights expect a multiple of ",
              groups_c);
  const auto [x, y, n, c, h, w, oh, ow] = conv_io(op, qx, *packed, scale, zero_point);
  packed->run(reinterpret_cast<const uint8_t*>(x.data_ptr<c10::quint8>()), {n, h, w, c}, x.q_scale(),
              x.q_zero_point(), scale, zero_point, relu, qmax, reinterpret_cast<uint8_t*>(y.data_ptr<c10::quint8>()), oh,
              ow);
  return y;
}

// conv2d followed by add(conv, residual) [+ ReLU], with one rounding: the epilogue adds the
// residual's real value before requantizing to (scale, zero_point).
at::Tensor conv2d_add(const at::Tensor& qx, const PackedPtr& packed, const at::Tensor& qres, double scale,
                      int64_t zero_point, bool relu) {
  constexpr const char* op = "quantx::conv2d_add";
  check_quint8(op, "qx", qx);
  check_quint8(op, "qres", qres);
  TORCH_CHECK(!packed->is_linear(), op, ": packed weights are a linear layer's; use quantx::linear");
  TORCH_CHECK(qx.dim() == 4, op, ": qx should be 4-D (N, C, H, W), got shape ", qx.sizes());
  check_scale(op, scale);
  check_zero_point(op, zero_point, 0, 255);
  TORCH_CHECK(qx.size(1) % packed->in_channels_per_group() == 0, op, ": qx has ", qx.size(1),
              " channels, the weights expect a multiple of ", packed->in_channels_per_group());
  const at::Tensor x = qx.contiguous(c10::MemoryFormat::ChannelsLast);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = packed->out_size(h, 0), ow = packed->out_size(w, 1);
  TORCH_CHECK(oh > 0 && ow > 0, op, ": input of spatial size ", h, "x", w, " is too small for the kernel");
  const std::vector<int64_t> out_shape{n, packed->out_channels(), oh, ow};
  TORCH_CHECK(qres.sizes() == c10::IntArrayRef(out_shape), op, ": qres should have the convolution's output shape ",
              c10::IntArrayRef(out_shape), ", got ", qres.sizes());
  const at::Tensor r = qres.contiguous(c10::MemoryFormat::ChannelsLast);
  at::Tensor y = empty_quantized(out_shape, x.options(), scale, zero_point,
                                             c10::MemoryFormat::ChannelsLast);
  packed->run(reinterpret_cast<const uint8_t*>(x.data_ptr<c10::quint8>()), {n, h, w, c}, x.q_scale(),
              x.q_zero_point(), scale, zero_point, relu, 255, reinterpret_cast<uint8_t*>(y.data_ptr<c10::quint8>()), oh,
              ow, reinterpret_cast<const uint8_t*>(r.data_ptr<c10::quint8>()), r.q_scale(), r.q_zero_point());
  return y;
}

// conv2d(conv2d(qx, first, mid_scale, mid_zero_point, mid_relu, mid_qmax), second, scale,
// zero_point, relu, qmax) without the tensor between them in memory (Note [Conv pairs] in
// kernels/conv.cpp): first must be pointwise. The same bytes as the two ops in turn.
at::Tensor conv2d_pair(const at::Tensor& qx, const PackedPtr& first, double mid_scale, int64_t mid_zero_point,
                       bool mid_relu, int64_t mid_qmax, const PackedPtr& second, double scale, int64_t zero_point,
                       bool relu, int64_t qmax) {
  constexpr const char* op = "quantx::conv2d_pair";
  check_quint8(op, "qx", qx);
  TORCH_CHECK(!first->is_linear() && !second->is_linear(), op,
              ": packed weights are a linear layer's; conv2d_pair takes two convolutions");
  TORCH_CHECK(first->is_pointwise(), op,
              ": first should be a pointwise convolution (kernel 1x1, stride 1, no padding, one group), got ",
              first->geometry());
  TORCH_CHECK(qx.dim() == 4, op, ": qx should be 4-D (N, C, H, W), got shape ", qx.sizes());
  check_scale(op, mid_scale);
  check_zero_point(op, mid_zero_point, 0, 255);
  check_qmax(op, mid_qmax, mid_zero_point, mid_relu);
  check_scale(op, scale);
  check_zero_point(op, zero_point, 0, 255);
  check_qmax(op, qmax, zero_point, relu);
  TORCH_CHECK(qx.size(1) == first->in_channels_per_group(), op, ": qx has ", qx.size(1),
              " channels, the first convolution expects ", first->in_channels_per_group());
  const int64_t mid_c = first->out_channels();
  TORCH_CHECK(second->in_channels_per_group() * second->groups() == mid_c, op, ": the first convolution gives ", mid_c,
              " channels, the second expects ", second->in_channels_per_group() * second->groups());
  const auto [x, y, n, c, h, w, oh, ow] = conv_io(op, qx, *second, scale, zero_point);
  const auto c1 = first->call({n, h, w, c}, x.q_scale(), x.q_zero_point(), mid_scale, mid_zero_point, mid_relu,
                              mid_qmax, h, w);
  const auto c2 = second->call({n, h, w, mid_c}, mid_scale, mid_zero_point, scale, zero_point, relu, qmax, oh, ow);
  const kernels::ConvStep s1 = first->step(c1), s2 = second->step(c2);
  const auto* px = reinterpret_cast<const uint8_t*>(x.data_ptr<c10::quint8>());
  auto* py = reinterpret_cast<uint8_t*>(y.data_ptr<c10::quint8>());
  // Output rows over the intra-op pool: each part computes the first-conv rows it reads (a part
  // after the first recomputes the few its windows share with the one before).
  const int64_t row_macs = ow * second->macs_per_pixel() + w * first->macs_per_pixel() * std::min(h, oh == 0 ? 1 : (h + oh - 1) / oh);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, row_macs));
  const kernels::Isa isa = kernels::active_isa();
  at::parallel_for(0, n * oh, grain, [&](int64_t begin, int64_t end) {
    const bool ok = kernels::conv2d_pair_u8s8_nhwc_packed(s1, s2, px, py, begin, end, isa);
    TORCH_INTERNAL_ASSERT(ok, op, ": the kernel declined shapes the op had checked");
  });
  return y;
}

at::Tensor linear(const at::Tensor& qx, const PackedPtr& packed, double scale, int64_t zero_point, bool relu,
                  int64_t qmax) {
  constexpr const char* op = "quantx::linear";
  check_quint8(op, "qx", qx);
  TORCH_CHECK(packed->is_linear(), op, ": packed weights are a convolution's; use quantx::conv2d");
  TORCH_CHECK(qx.dim() >= 1 && qx.size(-1) == packed->in_channels_per_group(), op, ": qx's last dimension should be ",
              packed->in_channels_per_group(), ", got shape ", qx.sizes());
  check_scale(op, scale);
  check_zero_point(op, zero_point, 0, 255);
  check_qmax(op, qmax, zero_point, relu);
  const at::Tensor x = qx.contiguous();
  const int64_t k = x.size(-1), rows = k == 0 ? 0 : x.numel() / k;
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = packed->out_channels();
  at::Tensor y = empty_quantized(out_shape, x.options(), scale, zero_point);
  if (rows > 0) {
    packed->run(reinterpret_cast<const uint8_t*>(x.data_ptr<c10::quint8>()), {rows, 1, 1, k}, x.q_scale(),
                x.q_zero_point(), scale, zero_point, relu, qmax, reinterpret_cast<uint8_t*>(y.data_ptr<c10::quint8>()), 1,
                1);
  }
  return y;
}

at::Tensor add(const at::Tensor& qa, const at::Tensor& qb, double scale, int64_t zero_point, bool relu) {
  constexpr const char* op = "quantx::add";
  check_quint8(op, "qa", qa);
  check_quint8(op, "qb", qb);
  check_scale(op, scale);
  check_zero_point(op, zero_point, 0, 255);
  // Broadcasting as aten::add does (e.g. an attention mask [1, H, N, N] added to [B, H, N, N]):
  // the smaller operand is expanded and materialized.
  const std::vector<int64_t> shape = broadcast_shape(op, qa.sizes(), qb.sizes());
  const at::Tensor ea = qa.sizes() == shape ? qa : qa.expand(shape);
  const at::Tensor eb = qb.sizes() == shape ? qb : qb.expand(shape);
  const auto fmt = ea.dim() == 4 && ea.is_contiguous(c10::MemoryFormat::ChannelsLast) ? c10::MemoryFormat::ChannelsLast
                                                                                       : c10::MemoryFormat::Contiguous;
  const at::Tensor a = ea.contiguous(fmt), b = eb.contiguous(fmt);
  at::Tensor y = empty_quantized(a.sizes(), a.options(), scale, zero_point, fmt);
  const kernels::AddParams p{static_cast<float>(a.q_scale()), static_cast<float>(b.q_scale()),
                             1.0f / static_cast<float>(scale), static_cast<int32_t>(a.q_zero_point()),
                             static_cast<int32_t>(b.q_zero_point()), static_cast<int32_t>(zero_point),
                             relu ? static_cast<int32_t>(zero_point) : 0, 255};
  const auto* pa = reinterpret_cast<const uint8_t*>(a.data_ptr<c10::quint8>());
  const auto* pb = reinterpret_cast<const uint8_t*>(b.data_ptr<c10::quint8>());
  auto* py = reinterpret_cast<uint8_t*>(y.data_ptr<c10::quint8>());
  parallel_chunks(a.numel(), [&](int64_t s, int64_t e) { kernels::add_u8_scalar(e - s, pa + s, pb + s, p, py + s); });
  return y;
}

// float -> quint8 with our quantize kernel, written channels-last for 4-D input: the first
// convolution of a quantx model then reads it without a layout copy.
at::Tensor quantize_nhwc(const at::Tensor& input, double scale, int64_t zero_point) {
  constexpr const char* op = "quantx::quantize_nhwc";
  check_float(op, "input", input);
  check_scale(op, scale);
  check_zero_point(op, zero_point, 0, 255);
  const auto fmt = input.dim() == 4 ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
  const kernels::AffineParams p = affine(scale, zero_point, 0, 255);
  const auto& k = kernels::quantize_kernels();
  if (input.dim() == 4 && input.size(1) > 1 && !input.is_contiguous(fmt)) {
    // NCHW (the usual image batch): quantized straight into NHWC, without a float layout copy.
    const at::Tensor x = input.contiguous();
    at::Tensor y = empty_quantized(x.sizes(), x.options().dtype(c10::kQUInt8), scale, zero_point, fmt);
    const int64_t c = x.size(1), hw = x.size(2) * x.size(3);
    const float* src = x.data_ptr<float>();
    auto* dst = reinterpret_cast<uint8_t*>(y.data_ptr<c10::quint8>());
    parallel_chunks(x.size(0) * hw, [&](int64_t b, int64_t e) {
      while (b < e) {  // per image: its planes are apart
        const int64_t n = b / hw, end = std::min(e, (n + 1) * hw);
        kernels::f32_planes_to_u8_pixels(k, c, hw, src + n * c * hw, dst + n * hw * c, b - n * hw, end - n * hw, p);
        b = end;
      }
    });
    return y;
  }
  const at::Tensor x = input.contiguous(fmt);
  at::Tensor y = empty_quantized(x.sizes(), x.options().dtype(c10::kQUInt8), scale, zero_point, fmt);
  const float* src = x.data_ptr<float>();
  auto* dst = reinterpret_cast<uint8_t*>(y.data_ptr<c10::quint8>());
  parallel_chunks(x.numel(), [&](int64_t b, int64_t e) { k.f32_u8_quantize(e - b, src + b, dst + b, p); });
  return y;
}

PackedPtr conv_prepack(const at::Tensor& weight, const at::Tensor& scales, const c10::optional<at::Tensor>& bias,
                       std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation,
                       int64_t groups) {
  return c10::make_intrusive<PackedConv>(weight, scales, bias, stride, padding, dilation, groups);
}

PackedPtr linear_prepack(const at::Tensor& weight, const at::Tensor& scales, const c10::optional<at::Tensor>& bias) {
  return c10::make_intrusive<PackedConv>(weight, scales, bias, std::vector<int64_t>{1, 1}, std::vector<int64_t>{0, 0},
                                         std::vector<int64_t>{1, 1}, 1);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.class_<PackedConv>("PackedConv")
      .def_pickle([](const PackedPtr& self) { return self->state(); },
                  [](PackedConv::State s) { return PackedConv::from_state(std::move(s)); });
  m.def("conv_prepack(Tensor weight, Tensor scales, Tensor? bias, int[] stride, int[] padding, int[] dilation, "
        "int groups) -> __torch__.torch.classes.quantx.PackedConv",
        conv_prepack);
  m.def("linear_prepack(Tensor weight, Tensor scales, Tensor? bias) -> __torch__.torch.classes.quantx.PackedConv",
        linear_prepack);
  m.def("conv2d(Tensor qx, __torch__.torch.classes.quantx.PackedConv packed, float output_scale, "
        "int output_zero_point, bool relu=False, int qmax=255) -> Tensor");
  m.def("conv2d_add(Tensor qx, __torch__.torch.classes.quantx.PackedConv packed, Tensor qres, float output_scale, "
        "int output_zero_point, bool relu=False) -> Tensor");
  m.def("conv2d_pair(Tensor qx, __torch__.torch.classes.quantx.PackedConv first, float mid_scale, "
        "int mid_zero_point, bool mid_relu, int mid_qmax, __torch__.torch.classes.quantx.PackedConv second, "
        "float output_scale, int output_zero_point, bool relu=False, int qmax=255) -> Tensor");
  m.def("linear(Tensor qx, __torch__.torch.classes.quantx.PackedConv packed, float output_scale, "
        "int output_zero_point, bool relu=False, int qmax=255) -> Tensor");
  m.def("add(Tensor qa, Tensor qb, float output_scale, int output_zero_point, bool relu=False) -> Tensor");
  m.def("quantize_nhwc(Tensor input, float scale, int zero_point) -> Tensor", quantize_nhwc);
}

TORCH_LIBRARY_IMPL(quantx, QuantizedCPU, m) {
  m.impl("conv2d", conv2d);
  m.impl("conv2d_add", conv2d_add);
  m.impl("conv2d_pair", conv2d_pair);
  m.impl("linear", linear);
  m.impl("add", add);
}

// A float tensor reaching these ops is a usage error; the same kernels report it clearly.
TORCH_LIBRARY_IMPL(quantx, CPU, m) {
  m.impl("conv2d", conv2d);
  m.impl("conv2d_add", conv2d_add);
  m.impl("conv2d_pair", conv2d_pair);
  m.impl("linear", linear);
  m.impl("add", add);
}

}  // namespace tqx::ops
