// The min/max observer family as TorchScript custom classes: running min/max or a moving
// average of it, per tensor or per channel. qparams equal torch.ao.quantization's for the same
// settings (Note [Rounding] and kernels/qparams.h).
#include <ATen/core/Tensor.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <tuple>
#include <vector>

#include "observers/factory.h"
#include "observers/observer_common.h"

namespace tqx::observers {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// State and logic shared by the four registered classes.
class MinMaxStats : public torch::CustomClassHolder {
 public:
  MinMaxStats(const char* name, bool per_channel, int64_t axis, ObserverConfig cfg, double averaging_constant)
      : name_(name), per_channel_(per_channel), axis_(axis), cfg_(cfg), averaging_(averaging_constant) {
    cfg_.validate(name_);
    TORCH_CHECK(averaging_ == 0.0 || (averaging_ > 0.0 && averaging_ <= 1.0), name_,
                ": averaging_constant should be in (0, 1], got ", averaging_);
  }

  at::Tensor forward(const at::Tensor& input) {
    const at::Tensor x = observer_input(name_, input, cfg_);
    if (!x.defined()) {
      ++nonfloat_;
      return input;
    }
    if (x.numel() == 0) return input;
    std::vector<float> lo, hi;
    if (per_channel_) {
      batch_per_channel(x, &lo, &hi);
    } else {
      lo.assign(1, kInf);
      hi.assign(1, -kInf);
      nonfinite_ += finite_minmax(x.data_ptr<float>(), x.numel(), &lo[0], &hi[0]);
    }
    update(lo, hi);
    ++batches_;
    return input;
  }

  std::tuple<at::Tensor, at::Tensor> calculate_qparams() const {
    if (min_.empty()) return qparams_from_bounds(cfg_, {kInf}, {-kInf});  // no data: scale 1, zero point 0
    return qparams_from_bounds(cfg_, min_, max_);
  }

  at::Tensor min_val() const { return float_vector_tensor(min_.empty() ? std::vector<float>{kInf} : min_); }
  at::Tensor max_val() const { return float_vector_tensor(max_.empty() ? std::vector<float>{-kInf} : max_); }
  int64_t nonfinite_count() const { return nonfinite_; }
  int64_t batches() const { return batches_; }
  int64_t nonfloat_count() const { return nonfloat_; }
  void set_skip_non_float(bool skip) { cfg_.skip_non_float = skip; }
  void reset() {
    min_.clear();
    max_.clear();
    nonfinite_ = 0;
    batches_ = 0;
    nonfloat_ = 0;
  }

  std::string repr() const {
    std::ostringstream os;
    os << name_ << "(";
    if (per_channel_) os << "axis=" << axis_ << ", ";
    os << "quant_min=" << cfg_.quant_min << ", quant_max=" << cfg_.quant_max
       << ", symmetric=" << (cfg_.symmetric ? "True" : "False");
    if (averaging_ > 0.0) os << ", averaging_constant=" << averaging_;
    os << ", batches=" << batches_ << ")";
    return os.str();
  }

  using State = std::tuple<int64_t, std::vector<double>, std::vector<double>, std::vector<double>>;
  State get_state() const {
    std::vector<double> settings = cfg_.to_vector();
    settings.push_back(per_channel_ ? 1.0 : 0.0);
    settings.push_back(static_cast<double>(axis_));
    settings.push_back(averaging_);
    settings.push_back(static_cast<double>(nonfinite_));
    settings.push_back(static_cast<double>(batches_));
    settings.push_back(static_cast<double>(nonfloat_));
    return {kObserverStateVersion, settings, std::vector<double>(min_.begin(), min_.end()),
            std::vector<double>(max_.begin(), max_.end())};
  }
  void set_stats(const State& s) {
    const auto& settings = std::get<1>(s);
    TORCH_CHECK(settings.size() == ObserverConfig::kSize + 6, name_, ": saved state is malformed");
    nonfinite_ = static_cast<int64_t>(settings[ObserverConfig::kSize + 3]);
    batches_ = static_cast<int64_t>(settings[ObserverConfig::kSize + 4]);
    nonfloat_ = static_cast<int64_t>(settings[ObserverConfig::kSize + 5]);
    min_.assign(std::get<2>(s).begin(), std::get<2>(s).end());
    max_.assign(std::get<3>(s).begin(), std::get<3>(s).end());
    TORCH_CHECK(min_.size() == max_.size(), name_, ": saved state is malformed (", min_.size(), " minima, ",
                max_.size(), " maxima)");
  }
  static std::tuple<ObserverConfig, bool, int64_t, double> settings_of(const char* name, const State& s) {
    check_state_version(name, std::get<0>(s));
    const auto& v = std::get<1>(s);
    const ObserverConfig cfg = ObserverConfig::from_vector(name, v, 0);
    TORCH_CHECK(v.size() == ObserverConfig::kSize + 6, name, ": saved state is malformed");
    return {cfg, v[ObserverConfig::kSize] != 0.0, static_cast<int64_t>(v[ObserverConfig::kSize + 1]),
            v[ObserverConfig::kSize + 2]};
  }

 private:
  void batch_per_channel(const at::Tensor& x, std::vector<float>* lo, std::vector<float>* hi) {
    TORCH_CHECK(x.dim() > 0, name_, ": input should have at least one dimension, got a 0-d tensor");
    TORCH_CHECK(axis_ >= -x.dim() && axis_ < x.dim(), name_, ": axis ", axis_,
                " is out of range for an input of shape ", x.sizes());
    const int64_t axis = axis_ < 0 ? axis_ + x.dim() : axis_;
    const int64_t channels = x.size(axis);
    TORCH_CHECK(min_.empty() || static_cast<int64_t>(min_.size()) == channels, name_, ": input should have ",
                min_.size(), " channels along axis ", axis_, " as in earlier batches, got shape ", x.sizes());
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= x.size(d);
    for (int64_t d = axis + 1; d < x.dim(); ++d) inner *= x.size(d);
    lo->assign(channels, kInf);
    hi->assign(channels, -kInf);
    const float* p = x.data_ptr<float>();
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t c = 0; c < channels; ++c) {
        float mn, mx;
        nonfinite_ += finite_minmax(p + (o * channels + c) * inner, inner, &mn, &mx);
        (*lo)[c] = std::min((*lo)[c], mn);
        (*hi)[c] = std::max((*hi)[c], mx);
      }
    }
  }

  // Per channel: a batch with no finite value (lo > hi) changes nothing; the first batch with
  // data sets the bounds; later ones take the running min/max or the moving average.
  void update(const std::vector<float>& lo, const std::vector<float>& hi) {
    if (min_.empty()) {
      min_.assign(lo.size(), kInf);
      max_.assign(hi.size(), -kInf);
    }
    const float c = static_cast<float>(averaging_);
    for (size_t i = 0; i < min_.size(); ++i) {
      if (lo[i] > hi[i]) continue;
      if (min_[i] > max_[i]) {
        min_[i] = lo[i];
        max_[i] = hi[i];
      } else if (averaging_ > 0.0) {
        // torch.ao's moving average, in float32: m = m + c * (batch - m).
        min_[i] = min_[i] + c * (lo[i] - min_[i]);
        max_[i] = max_[i] + c * (hi[i] - max_[i]);
      } else {
        min_[i] = std::min(min_[i], lo[i]);
        max_[i] = std::max(max_[i], hi[i]);
      }
    }
  }

  const char* name_;
  bool per_channel_;
  int64_t axis_;
  ObserverConfig cfg_;
  double averaging_;
  std::vector<float> min_, max_;
  int64_t nonfinite_ = 0;
  int64_t batches_ = 0;
  int64_t nonfloat_ = 0;
};

ObserverConfig make_config(int64_t quant_min, int64_t quant_max, bool symmetric, double eps) {
  ObserverConfig c;
  c.quant_min = quant_min;
  c.quant_max = quant_max;
  c.symmetric = symmetric;
  c.eps = eps;
  return c;
}

struct MinMaxObserver : MinMaxStats {
  static constexpr const char* kName = "MinMaxObserver";
  MinMaxObserver(int64_t qmin, int64_t qmax, bool symmetric, double eps)
      : MinMaxStats(kName, false, 0, make_config(qmin, qmax, symmetric, eps), 0.0) {}
  static c10::intrusive_ptr<MinMaxObserver> make(const ObserverConfig& c, int64_t, double) {
    return c10::make_intrusive<MinMaxObserver>(c.quant_min, c.quant_max, c.symmetric, c.eps);
  }
};

struct MovingAverageMinMaxObserver : MinMaxStats {
  static constexpr const char* kName = "MovingAverageMinMaxObserver";
  MovingAverageMinMaxObserver(int64_t qmin, int64_t qmax, bool symmetric, double averaging_constant, double eps)
      : MinMaxStats(kName, false, 0, make_config(qmin, qmax, symmetric, eps), averaging_constant) {}
  static c10::intrusive_ptr<MovingAverageMinMaxObserver> make(const ObserverConfig& c, int64_t, double a) {
    return c10::make_intrusive<MovingAverageMinMaxObserver>(c.quant_min, c.quant_max, c.symmetric, a, c.eps);
  }
};

struct PerChannelMinMaxObserver : MinMaxStats {
  static constexpr const char* kName = "PerChannelMinMaxObserver";
  PerChannelMinMaxObserver(int64_t axis, int64_t qmin, int64_t qmax, bool symmetric, double eps)
      : MinMaxStats(kName, true, axis, make_config(qmin, qmax, symmetric, eps), 0.0) {}
  static c10::intrusive_ptr<PerChannelMinMaxObserver> make(const ObserverConfig& c, int64_t axis, double) {
    return c10::make_intrusive<PerChannelMinMaxObserver>(axis, c.quant_min, c.quant_max, c.symmetric, c.eps);
  }
};

struct MovingAveragePerChannelMinMaxObserver : MinMaxStats {
  static constexpr const char* kName = "MovingAveragePerChannelMinMaxObserver";
  MovingAveragePerChannelMinMaxObserver(int64_t axis, int64_t qmin, int64_t qmax, bool symmetric,
                                        double averaging_constant, double eps)
      : MinMaxStats(kName, true, axis, make_config(qmin, qmax, symmetric, eps), averaging_constant) {}
  static c10::intrusive_ptr<MovingAveragePerChannelMinMaxObserver> make(const ObserverConfig& c, int64_t axis,
                                                                        double a) {
    return c10::make_intrusive<MovingAveragePerChannelMinMaxObserver>(axis, c.quant_min, c.quant_max,
                                                                     c.symmetric, a, c.eps);
  }
};

// Methods common to the four classes; T::make rebuilds an object from its saved settings.
template <typename T>
void register_methods(torch::class_<T> cls) {
  using Ptr = c10::intrusive_ptr<T>;
  cls.def("forward", [](const Ptr& self, const at::Tensor& x) { return self->forward(x); })
      .def("calculate_qparams", [](const Ptr& self) { return self->calculate_qparams(); })
      .def("min_val", [](const Ptr& self) { return self->min_val(); })
      .def("max_val", [](const Ptr& self) { return self->max_val(); })
      .def("nonfinite_count", [](const Ptr& self) { return self->nonfinite_count(); })
      .def("batches", [](const Ptr& self) { return self->batches(); })
      .def("nonfloat_count", [](const Ptr& self) { return self->nonfloat_count(); })
      .def("reset", [](const Ptr& self) { self->reset(); })
      .def("describe", [](const Ptr& self) { return self->repr(); })
      .def_pickle([](const Ptr& self) { return self->get_state(); },
                  [](typename T::State state) {
                    auto [cfg, per_channel, axis, averaging] = T::settings_of(T::kName, state);
                    Ptr obj = T::make(cfg, axis, averaging);
                    obj->set_skip_non_float(cfg.skip_non_float);
                    obj->set_stats(state);
                    return obj;
                  });
}

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  register_methods(m.class_<MinMaxObserver>("MinMaxObserver").def(torch::init<int64_t, int64_t, bool, double>()));
  register_methods(m.class_<MovingAverageMinMaxObserver>("MovingAverageMinMaxObserver")
                       .def(torch::init<int64_t, int64_t, bool, double, double>()));
  register_methods(m.class_<PerChannelMinMaxObserver>("PerChannelMinMaxObserver")
                       .def(torch::init<int64_t, int64_t, int64_t, bool, double>()));
  register_methods(m.class_<MovingAveragePerChannelMinMaxObserver>("MovingAveragePerChannelMinMaxObserver")
                       .def(torch::init<int64_t, int64_t, int64_t, bool, double, double>()));
}

}  // namespace

c10::IValue make_minmax_observer(const ObserverSpec& spec) {
  const ObserverConfig& c = spec.config;
  auto with_config = [&](auto obj) {
    obj->set_skip_non_float(c.skip_non_float);
    return c10::IValue(obj);
  };
  if (spec.kind == "minmax") return with_config(MinMaxObserver::make(c, 0, 0.0));
  if (spec.kind == "moving_average_minmax") {
    return with_config(MovingAverageMinMaxObserver::make(c, 0, spec.averaging_constant));
  }
  TORCH_CHECK(spec.kind == "per_channel_minmax", "make_minmax_observer: unknown kind '", spec.kind, "'");
  return with_config(PerChannelMinMaxObserver::make(c, spec.axis, 0.0));
}

}  // namespace tqx::observers
