// Quantization-aware training operators: the fused observe + fake-quantize class that
// prepare_qat puts where PTQ puts observers, and the weight / BatchNorm-folding ops of QAT graphs.
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <tuple>
#include <vector>

#include "kernels/qparams.h"
#include "kernels/reduce.h"
#include "observers/observer_common.h"
#include "ops/qat.h"

namespace tqx::ops {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// 2: fixed qparams (learned LSQ qparams handed to convert, or set_qparams) joined the state.
constexpr int64_t kFakeQuantizeStateVersion = 2;

// Through the dispatcher, so the Autograd kernels (STE, fake_quantize_autograd.cpp) record.
at::Tensor fake_quantize_per_tensor_ad(const at::Tensor& x, double scale, int64_t zp, int64_t qmin, int64_t qmax) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("quantx::fake_quantize_per_tensor", "")
                             .typed<at::Tensor(const at::Tensor&, double, int64_t, int64_t, int64_t)>();
  return op.call(x, scale, zp, qmin, qmax);
}

at::Tensor fake_quantize_per_channel_ad(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zp,
                                        int64_t qmin, int64_t qmax) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("quantx::fake_quantize_per_channel", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t)>();
  return op.call(x, scale, zp, 0, qmin, qmax);
}

at::Tensor fake_quantize_learnable_ad(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zp, int64_t qmin,
                                      int64_t qmax, double grad_factor) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("quantx::fake_quantize_learnable_per_tensor", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t, double)>();
  return op.call(x, scale, zp, qmin, qmax, grad_factor);
}

// Activation fake-quantize with its own moving-average min/max observer (torch.ao's
// FakeQuantize over MovingAverageMinMaxObserver, in one call). It also answers the observer
// interface (calculate_qparams, batches, ...), so convert treats a QAT module's fake-quantizers
// as a prepared module's observers. Statistics are updated only in training mode: eval() of a QAT
// model runs with fixed qparams, i.e. exactly the model convert will produce.
//
// forward_learnable is the LSQ form (Esser et al. 2020): scale and zero point are parameters of
// the QAT module, passed in; the first training batch initialises them from the observed range
// (a scale of 0 marks them unset). set_qparams fixes the qparams convert reads (the learned ones).
class FakeQuantize : public torch::CustomClassHolder {
 public:
  FakeQuantize(int64_t quant_min, int64_t quant_max, double averaging_constant)
      : averaging_(averaging_constant) {
    cfg_.quant_min = quant_min;
    cfg_.quant_max = quant_max;
    cfg_.skip_non_float = true;
    cfg_.validate(kName);
    TORCH_CHECK(quant_min >= -128 && quant_max <= 255 && (quant_min >= 0 || quant_max <= 127), kName,
                ": [quant_min, quant_max] should lie in the quint8 or qint8 range, got [", quant_min, ", ", quant_max,
                "]");
    TORCH_CHECK(averaging_ > 0.0 && averaging_ <= 1.0, kName, ": averaging_constant should be in (0, 1], got ",
                averaging_);
  }

  at::Tensor forward(const at::Tensor& input, bool training) {
    if (!input.defined() || !input.is_floating_point()) {
      if (training) ++nonfloat_;
      return input;
    }
    if (training && observer_enabled_) observe(input);
    if (!fake_quant_enabled_ || (min_ > max_ && !fixed())) return input;
    const auto [scale, zp] = qparams();
    // qparams come from [quant_min, quant_max] (7 bits under reduce_range), but the int8 model
    // clamps only at its storage type's range: simulate that, not the narrower range.
    return fake_quantize_per_tensor_ad(input, scale, zp, storage_min(), storage_max());
  }

  at::Tensor forward_learnable(const at::Tensor& input, bool training, const at::Tensor& scale,
                               const at::Tensor& zero_point) {
    if (!input.defined() || !input.is_floating_point()) {
      if (training) ++nonfloat_;
      return input;
    }
    if (training && observer_enabled_) observe(input);
    TORCH_CHECK(scale.numel() == 1 && zero_point.numel() == 1, kName, ".forward_learnable: scale and zero_point ",
                "should have one element each, got shapes ", scale.sizes(), " and ", zero_point.sizes());
    const float current = scale.detach().item<float>();
    if (current == 0.0f) {
      if (!training || min_ > max_) return input;  // unset: no range seen yet
      const auto [s, z] = qparams();
      scale.detach().fill_(s);
      zero_point.detach().fill_(static_cast<double>(z));
    } else if (training && current < cfg_.eps) {
      // An optimizer step past zero: keep the scale positive (torch.ao's _LearnableFakeQuantize clamps too).
      scale.detach().fill_(cfg_.eps);
    }
    if (!fake_quant_enabled_) return input;
    // LSQ's gradient scale 1/sqrt(N * qmax), N the features of one sample (the paper's choice;
    // torch.ao's use_grad_scaling counts the whole batch, which slows the scales by sqrt(batch)).
    const int64_t features = input.dim() > 1 && input.size(0) > 0 ? input.numel() / input.size(0) : input.numel();
    const double grad_factor =
        1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(features, 1)) * static_cast<double>(storage_max()));
    return fake_quantize_learnable_ad(input, scale, zero_point, storage_min(), storage_max(), grad_factor);
  }

  // The qparams forward_learnable uses for these parameter values (same rounding of the zero point).
  void set_learned_qparams(const at::Tensor& scale, const at::Tensor& zero_point) {
    const float z = zero_point.detach().to(c10::kFloat).item<float>();
    TORCH_CHECK(std::isfinite(z), kName, ".set_learned_qparams: zero_point should be finite, got ", z);
    const float zr = std::min(std::max(std::nearbyint(z), static_cast<float>(storage_min())),
                              static_cast<float>(storage_max()));
    set_qparams(scale.detach().to(c10::kFloat).item<float>(), static_cast<int64_t>(zr));
  }

  void set_qparams(double scale, int64_t zero_point) {
    const float s = static_cast<float>(scale);
    TORCH_CHECK(std::isfinite(s) && s > 0.0f && std::isfinite(1.0f / s), kName,
                ".set_qparams: scale should be finite and > 0, got ", scale);
    TORCH_CHECK(zero_point >= storage_min() && zero_point <= storage_max(), kName,
                ".set_qparams: zero_point should be in [", storage_min(), ", ", storage_max(), "], got ", zero_point);
    fixed_scale_ = s;
    fixed_zp_ = zero_point;
  }

  // Sets the observed range to the one `scale` and `zero_point` represent over [quant_min,
  // quant_max] (QAT started from PTQ-calibrated qparams; choose_qparams gives them back).
  void set_range_from_qparams(double scale, int64_t zero_point) {
    TORCH_CHECK(std::isfinite(scale) && scale > 0.0, kName, ".set_range_from_qparams: scale should be finite and > 0, ",
                "got ", scale);
    set_min_max(static_cast<double>(cfg_.quant_min - zero_point) * scale,
                static_cast<double>(cfg_.quant_max - zero_point) * scale);
  }

  // Sets the observed range (used to synchronise observers across processes).
  void set_min_max(double lo, double hi) {
    TORCH_CHECK(!std::isnan(lo) && !std::isnan(hi), kName, ".set_min_max: bounds should not be NaN, got [", lo, ", ",
                hi, "]");
    min_ = static_cast<float>(lo);
    max_ = static_cast<float>(hi);
  }

  std::tuple<at::Tensor, at::Tensor> calculate_qparams() const {
    if (fixed()) {
      return {observers::float_vector_tensor({fixed_scale_}), at::full({1}, fixed_zp_, at::dtype(c10::kLong))};
    }
    return observers::qparams_from_bounds(cfg_, {min_ > max_ ? 0.0f : min_}, {min_ > max_ ? 0.0f : max_});
  }

  void enable_observer(bool on) { observer_enabled_ = on; }
  void enable_fake_quant(bool on) { fake_quant_enabled_ = on; }
  bool observer_enabled() const { return observer_enabled_; }
  bool fake_quant_enabled() const { return fake_quant_enabled_; }
  int64_t batches() const { return batches_; }
  int64_t nonfinite_count() const { return nonfinite_; }
  int64_t nonfloat_count() const { return nonfloat_; }
  double min_val() const { return min_; }
  double max_val() const { return max_; }

  std::string describe() const {
    std::ostringstream os;
    os << kName << "(quant_min=" << cfg_.quant_min << ", quant_max=" << cfg_.quant_max
       << ", averaging_constant=" << averaging_ << ", observer=" << (observer_enabled_ ? "on" : "off")
       << ", fake_quant=" << (fake_quant_enabled_ ? "on" : "off") << ", min=" << min_ << ", max=" << max_
       << ", batches=" << batches_;
    if (fixed()) os << ", scale=" << fixed_scale_ << ", zero_point=" << fixed_zp_;
    os << ")";
    return os.str();
  }

  using State = std::tuple<int64_t, int64_t, int64_t, double, bool, bool, double, double, int64_t, int64_t, int64_t,
                           double, int64_t>;
  State get_state() const {
    return {kFakeQuantizeStateVersion, cfg_.quant_min, cfg_.quant_max, averaging_, observer_enabled_,
            fake_quant_enabled_, min_, max_, batches_, nonfinite_, nonfloat_, fixed_scale_, fixed_zp_};
  }
  static c10::intrusive_ptr<FakeQuantize> from_state(const State& s) {
    TORCH_CHECK(std::get<0>(s) == kFakeQuantizeStateVersion, kName, ": saved state has version ", std::get<0>(s),
                ", this torchquantx reads version ", kFakeQuantizeStateVersion, "; prepare the QAT model again");
    auto obj = c10::make_intrusive<FakeQuantize>(std::get<1>(s), std::get<2>(s), std::get<3>(s));
    obj->observer_enabled_ = std::get<4>(s);
    obj->fake_quant_enabled_ = std::get<5>(s);
    obj->min_ = static_cast<float>(std::get<6>(s));
    obj->max_ = static_cast<float>(std::get<7>(s));
    obj->batches_ = std::get<8>(s);
    obj->nonfinite_ = std::get<9>(s);
    obj->nonfloat_ = std::get<10>(s);
    obj->fixed_scale_ = static_cast<float>(std::get<11>(s));
    obj->fixed_zp_ = std::get<12>(s);
    return obj;
  }

  static constexpr const char* kName = "quantx.FakeQuantize";

 private:
  bool fixed() const { return fixed_scale_ > 0.0f; }
  int64_t storage_min() const { return cfg_.quant_min >= 0 ? 0 : -128; }
  int64_t storage_max() const { return cfg_.quant_min >= 0 ? 255 : 127; }

  std::pair<double, int64_t> qparams() const {
    if (fixed()) return {fixed_scale_, fixed_zp_};
    kernels::QParams p = kernels::choose_qparams(min_, max_, cfg_.quant_min, cfg_.quant_max, /*symmetric=*/false,
                                                 static_cast<float>(cfg_.eps));
    return {p.scale, p.zero_point};
  }

  void observe(const at::Tensor& input) {
    const at::Tensor x = observers::observer_input(kName, input.detach(), cfg_);
    if (!x.defined() || x.numel() == 0) return;
    float lo = kInf, hi = -kInf;
    nonfinite_ += observers::finite_minmax(x.data_ptr<float>(), x.numel(), &lo, &hi);
    ++batches_;
    if (lo > hi) return;  // nothing finite
    if (min_ > max_) {
      min_ = lo;
      max_ = hi;
    } else {
      // torch.ao's moving average, in float32: m = m + c * (batch - m).
      const float c = static_cast<float>(averaging_);
      min_ = min_ + c * (lo - min_);
      max_ = max_ + c * (hi - max_);
    }
  }

  observers::ObserverConfig cfg_;
  double averaging_;
  bool observer_enabled_ = true;
  bool fake_quant_enabled_ = true;
  float min_ = kInf;
  float max_ = -kInf;
  int64_t batches_ = 0;
  int64_t nonfinite_ = 0;
  int64_t nonfloat_ = 0;
  float fixed_scale_ = 0.0f;  // > 0: qparams fixed by set_qparams
  int64_t fixed_zp_ = 0;
};

void check_weight_args(const char* op, const at::Tensor& w, int64_t bits) {
  TORCH_CHECK(bits == 0 || bits == 4 || bits == 8 || bits == 16, op, ": bits should be 4, 8, 16 or 0 (float), got ",
              bits);
  TORCH_CHECK(w.scalar_type() == c10::kFloat && w.dim() >= 1, op,
              ": weight should be float32 with output channels on dim 0, got ", w.scalar_type(), " of shape ",
              w.sizes());
}

// Fake-quantizes a weight on the grid passes/weights.cpp's quantize_weight chooses for the same
// spec (same min/max kernel, same qparams, Note [Rounding]), so a QAT layer in eval mode sees the
// weight convert will store. The qparams follow the weight (no gradient through them); the values
// get the straight-through gradient.
at::Tensor fake_quantize_weight(const at::Tensor& weight, int64_t bits, bool per_channel, bool symmetric) {
  constexpr const char* op = "quantx::fake_quantize_weight";
  check_weight_args(op, weight, bits);
  if (bits == 0) return weight;  // a layer convert keeps in float (skipped or not reached by int8 inputs)
  const int64_t qmin = -(int64_t{1} << (bits - 1)), qmax = (int64_t{1} << (bits - 1)) - 1;
  const int64_t channels = per_channel ? weight.size(0) : 1;
  const int64_t per = channels == 0 ? 0 : weight.numel() / channels;
  std::vector<float> lo(channels), hi(channels);
  at::Tensor scale = at::empty({channels}, weight.options().dtype(c10::kFloat));
  at::Tensor zp = at::empty({channels}, weight.options().dtype(c10::kLong));
  {
    const at::Tensor w = weight.detach().contiguous();
    for (int64_t c = 0; c < channels; ++c) {
      kernels::reduce_kernels().f32_minmax(per, w.data_ptr<float>() + c * per, &lo[c], &hi[c]);
    }
    kernels::choose_qparams_per_channel(lo.data(), hi.data(), channels, qmin, qmax, symmetric,
                                        kernels::kDefaultScaleEps, scale.data_ptr<float>(), zp.data_ptr<int64_t>());
  }
  if (!per_channel) {
    return fake_quantize_per_tensor_ad(weight, scale.item<float>(), zp.item<int64_t>(), qmin, qmax);
  }
  return fake_quantize_per_channel_ad(weight, scale, zp, qmin, qmax);
}

std::vector<int64_t> channel_shape(int64_t dim, int64_t axis) {
  std::vector<int64_t> s(dim, 1);
  s[axis] = -1;
  return s;
}

// gamma / sqrt(var + eps) computed as FoldFrozenConvBatchnorm does, so convert's folded weight
// (from the same final statistics) is bit-identical.
at::Tensor bn_scale_factor(const at::Tensor& bn_weight, const at::Tensor& running_var, double eps) {
  return bn_weight * at::rsqrt(running_var + eps);
}

// Simulated Conv+BN folding (Jacob et al. 2018, as torch.ao's _ConvBnNd): the conv runs on the
// fake-quantized folded weight w * gamma / sqrt(running_var + eps), and qat_bn_output adds the
// folded bias. In training (`training`: BatchNorm on batch statistics) the folded weight comes
// back divided by the scale factor, so the conv yields the unfolded output BatchNorm normalises:
// torch.ao divides the conv output instead, the same per output channel but two passes over
// each activation (forward and backward) where this divides the weight.
at::Tensor qat_fold_weight(const at::Tensor& weight, const at::Tensor& bn_weight, const at::Tensor& running_var,
                           double eps, int64_t bits, bool per_channel, bool symmetric, bool training) {
  TORCH_CHECK(bn_weight.dim() == 1 && bn_weight.size(0) == weight.size(0), "quantx::qat_fold_weight: bn_weight ",
              "should have one value per output channel (", weight.size(0), "), got shape ", bn_weight.sizes());
  const at::Tensor sf = bn_scale_factor(bn_weight, running_var.detach(), eps).reshape(channel_shape(weight.dim(), 0));
  const at::Tensor folded = fake_quantize_weight(weight * sf, bits, per_channel, symmetric);
  return training ? folded / sf : folded;
}

at::Tensor qat_bn_output(const at::Tensor& conv_out, const c10::optional<at::Tensor>& bias,
                         const at::Tensor& bn_weight, const at::Tensor& bn_bias, at::Tensor& running_mean,
                         at::Tensor& running_var, double eps, double momentum, bool training) {
  TORCH_CHECK(conv_out.dim() >= 2 && conv_out.size(1) == bn_weight.size(0), "quantx::qat_bn_output: conv_out ",
              "should have ", bn_weight.size(0), " channels on dim 1, got shape ", conv_out.sizes());
  const auto shape = channel_shape(conv_out.dim(), 1);
  const bool has_bias = bias.has_value() && bias->defined();
  if (!training) {
    const at::Tensor b = has_bias ? *bias : at::zeros_like(running_mean);
    const at::Tensor b_fold = (b - running_mean) * at::rsqrt(running_var + eps) * bn_weight + bn_bias;
    return conv_out + b_fold.reshape(shape);
  }
  // conv_out is already unfolded (qat_fold_weight with training=True divided the weight).
  const at::Tensor y = has_bias ? conv_out + bias->reshape(shape) : conv_out;
  return at::batch_norm(y, bn_weight, bn_bias, running_mean, running_var, /*training=*/true, momentum, eps,
                        /*cudnn_enabled=*/false);
}

}  // namespace

c10::IValue make_fake_quantize(int64_t quant_min, int64_t quant_max, double averaging_constant) {
  return c10::IValue(c10::make_intrusive<FakeQuantize>(quant_min, quant_max, averaging_constant));
}

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  using Ptr = c10::intrusive_ptr<FakeQuantize>;
  m.class_<FakeQuantize>("FakeQuantize")
      .def(torch::init<int64_t, int64_t, double>())
      .def("forward", [](const Ptr& self, const at::Tensor& x, bool training) { return self->forward(x, training); })
      .def("forward_learnable",
           [](const Ptr& self, const at::Tensor& x, bool training, const at::Tensor& scale, const at::Tensor& zp) {
             return self->forward_learnable(x, training, scale, zp);
           })
      .def("set_learned_qparams",
           [](const Ptr& self, const at::Tensor& scale, const at::Tensor& zp) { self->set_learned_qparams(scale, zp); })
      .def("set_qparams", [](const Ptr& self, double scale, int64_t zp) { self->set_qparams(scale, zp); })
      .def("set_min_max", [](const Ptr& self, double lo, double hi) { self->set_min_max(lo, hi); })
      .def("set_range_from_qparams",
           [](const Ptr& self, double scale, int64_t zp) { self->set_range_from_qparams(scale, zp); })
      .def("calculate_qparams", [](const Ptr& self) { return self->calculate_qparams(); })
      .def("enable_observer", [](const Ptr& self, bool on) { self->enable_observer(on); })
      .def("enable_fake_quant", [](const Ptr& self, bool on) { self->enable_fake_quant(on); })
      .def("observer_enabled", [](const Ptr& self) { return self->observer_enabled(); })
      .def("fake_quant_enabled", [](const Ptr& self) { return self->fake_quant_enabled(); })
      .def("batches", [](const Ptr& self) { return self->batches(); })
      .def("nonfinite_count", [](const Ptr& self) { return self->nonfinite_count(); })
      .def("nonfloat_count", [](const Ptr& self) { return self->nonfloat_count(); })
      .def("min_val", [](const Ptr& self) { return self->min_val(); })
      .def("max_val", [](const Ptr& self) { return self->max_val(); })
      .def("describe", [](const Ptr& self) { return self->describe(); })
      .def_pickle([](const Ptr& self) { return self->get_state(); },
                  [](FakeQuantize::State state) { return FakeQuantize::from_state(state); });
  m.def("fake_quantize_weight(Tensor weight, int bits=8, bool per_channel=True, bool symmetric=True) -> Tensor");
  m.def("qat_fold_weight(Tensor weight, Tensor bn_weight, Tensor bn_running_var, float eps, int bits=8, "
        "bool per_channel=True, bool symmetric=True, bool training=False) -> Tensor");
  m.def("qat_bn_output(Tensor conv_out, Tensor? bias, Tensor bn_weight, Tensor bn_bias, Tensor(a!) running_mean, "
        "Tensor(b!) running_var, float eps, float momentum, bool training) -> Tensor");
}

// Compositions of autograd-aware ops: gradients reach weights, biases and BatchNorm's affine
// parameters through them.
TORCH_LIBRARY_IMPL(quantx, CompositeImplicitAutograd, m) {
  m.impl("fake_quantize_weight", fake_quantize_weight);
  m.impl("qat_fold_weight", qat_fold_weight);
  m.impl("qat_bn_output", qat_bn_output);
}

}  // namespace tqx::ops
