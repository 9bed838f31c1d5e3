// HistogramObserver: a mergeable fixed-bin histogram of activations, as a TorchScript custom
// class. Its qparams come from a range-setting method (kernels/range_search.h) that can be changed
// after calibration, since the histogram keeps everything every method needs.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <cmath>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/histogram.h"
#include "kernels/range_search.h"
#include "observers/factory.h"
#include "observers/observer_common.h"

namespace tqx::observers {
namespace {

constexpr const char* kName = "HistogramObserver";
// Version 2 added the range-setting method and its percentile to the settings; version 1 states
// load with method "minmax" (what their qparams used).
constexpr int64_t kStateVersion = 2;

class HistogramObserver : public torch::CustomClassHolder {
 public:
  HistogramObserver(int64_t bins, int64_t quant_min, int64_t quant_max, bool symmetric, double eps)
      : hist_(checked_bins(bins)) {
    cfg_.quant_min = quant_min;
    cfg_.quant_max = quant_max;
    cfg_.symmetric = symmetric;
    cfg_.eps = eps;
    cfg_.validate(kName);
  }

  at::Tensor forward(const at::Tensor& input) {
    const at::Tensor x = observer_input(kName, input, cfg_);
    if (!x.defined()) {
      ++nonfloat_;
      return input;
    }
    if (x.numel() == 0) return input;
    hist_.observe(x.data_ptr<float>(), x.numel());
    ++batches_;
    return input;
  }

  std::tuple<at::Tensor, at::Tensor> calculate_qparams() const {
    if (method_ == kernels::RangeMethod::kMinMax) return qparams_from_bounds(cfg_, {hist_.min()}, {hist_.max()});
    const kernels::ClipRange r = kernels::choose_range(hist_, grid(), method_, percentile_);
    return qparams_from_bounds(cfg_, {static_cast<float>(r.lo)}, {static_cast<float>(r.hi)});
  }

  // The method calculate_qparams uses; `percentile` is used by "percentile" and by "auto".
  void set_method(const std::string& method, double percentile) {
    method_ = checked_method("set_method", method);
    percentile_ = checked_percentile("set_method", percentile);
  }
  std::string method() const { return kernels::range_method_name(method_); }
  double percentile() const { return percentile_; }

  // (lo, hi, estimated SQNR in dB, method that chose the range) for `method`, leaving the
  // observer's own method unchanged. The SQNR is that of quantizing the observed tensor.
  std::tuple<double, double, double, std::string> estimate(const std::string& method, double percentile) const {
    const kernels::RangeMethod m = checked_method("estimate", method);
    const double p = checked_percentile("estimate", percentile);
    TORCH_CHECK(!hist_.empty(), kName, ".estimate: no finite values observed yet; run calibration data through "
                "the model first");
    const kernels::ClipRange r = kernels::choose_range(hist_, grid(), m, p);
    return {r.lo, r.hi, kernels::range_sqnr_db(hist_, grid(), r.lo, r.hi), kernels::range_method_name(r.method)};
  }

  void merge(const c10::intrusive_ptr<HistogramObserver>& other) {
    TORCH_CHECK(other, kName, ".merge: other should be a HistogramObserver, got None");
    hist_.merge(other->hist_);
    batches_ += other->batches_;
  }

  // (counts as float64, lower edge, upper edge)
  std::tuple<at::Tensor, double, double> histogram() const {
    at::Tensor counts = at::empty({hist_.bins()}, at::TensorOptions().dtype(c10::kDouble));
    std::copy(hist_.counts().begin(), hist_.counts().end(), counts.data_ptr<double>());
    return {counts, hist_.lo(), hist_.hi()};
  }

  void set_config(const ObserverConfig& cfg) { cfg_ = cfg; }

  double quantile(double q) const {
    TORCH_CHECK(q >= 0.0 && q <= 1.0, kName, ".quantile: q should be in [0, 1], got ", q);
    return hist_.quantile(q);
  }

  at::Tensor min_val() const { return float_vector_tensor({hist_.min()}); }
  at::Tensor max_val() const { return float_vector_tensor({hist_.max()}); }
  int64_t nonfinite_count() const { return hist_.nonfinite(); }
  int64_t batches() const { return batches_; }
  int64_t nonfloat_count() const { return nonfloat_; }
  void reset() {
    hist_.reset();
    batches_ = 0;
    nonfloat_ = 0;
  }
  std::string describe() const {
    std::ostringstream os;
    os << kName << "(bins=" << hist_.bins() << ", quant_min=" << cfg_.quant_min << ", quant_max=" << cfg_.quant_max
       << ", symmetric=" << (cfg_.symmetric ? "True" : "False") << ", method=" << method();
    if (method_ == kernels::RangeMethod::kPercentile || method_ == kernels::RangeMethod::kAuto) {
      os << ", percentile=" << percentile_;
    }
    if (method_ == kernels::RangeMethod::kAuto && !hist_.empty()) {
      os << " (chose " << kernels::range_method_name(kernels::choose_range(hist_, grid(), method_, percentile_).method)
         << ")";
    }
    os << ", batches=" << batches_ << ")";
    return os.str();
  }

  using State = std::tuple<int64_t, std::vector<double>, std::vector<double>, std::vector<double>>;
  State get_state() const {
    std::vector<double> settings = cfg_.to_vector();
    settings.push_back(static_cast<double>(batches_));
    settings.push_back(static_cast<double>(nonfloat_));
    settings.push_back(static_cast<double>(static_cast<int>(method_)));
    settings.push_back(percentile_);
    return {kStateVersion, settings, hist_.header(), hist_.counts()};
  }
  static c10::intrusive_ptr<HistogramObserver> from_state(const State& s) {
    const int64_t version = std::get<0>(s);
    check_state_version(kName, version, kStateVersion);
    const auto& settings = std::get<1>(s);
    const ObserverConfig cfg = ObserverConfig::from_vector(kName, settings, 0);
    const size_t expected = ObserverConfig::kSize + (version >= 2 ? 4 : 2);
    TORCH_CHECK(settings.size() == expected, kName, ": saved state (version ", version, ") is malformed: ",
                settings.size(), " settings, expected ", expected);
    const auto& counts = std::get<3>(s);
    auto obj = c10::make_intrusive<HistogramObserver>(static_cast<int64_t>(counts.size()), cfg.quant_min,
                                                      cfg.quant_max, cfg.symmetric, cfg.eps);
    obj->batches_ = static_cast<int64_t>(settings[ObserverConfig::kSize]);
    obj->nonfloat_ = static_cast<int64_t>(settings[ObserverConfig::kSize + 1]);
    obj->cfg_ = cfg;
    obj->hist_ = kernels::Histogram::from_state(std::get<2>(s), counts);
    if (version >= 2) {
      const double code = settings[ObserverConfig::kSize + 2];
      TORCH_CHECK(code >= 0.0 && code <= static_cast<double>(kernels::RangeMethod::kAuto) && code == std::floor(code),
                  kName, ": saved state has an unknown method code ", code);
      obj->method_ = static_cast<kernels::RangeMethod>(static_cast<int>(code));
      obj->percentile_ = checked_percentile("__setstate__", settings[ObserverConfig::kSize + 3]);
    }
    return obj;
  }

 private:
  kernels::QuantGrid grid() const {
    return {cfg_.quant_min, cfg_.quant_max, cfg_.symmetric, static_cast<float>(cfg_.eps)};
  }
  static kernels::RangeMethod checked_method(const char* fn, const std::string& method) {
    kernels::RangeMethod m = kernels::RangeMethod::kMinMax;
    TORCH_CHECK(kernels::parse_range_method(method, &m), kName, ".", fn, ": method should be one of ",
                kernels::range_method_names(), ", got '", method, "'");
    return m;
  }
  static double checked_percentile(const char* fn, double percentile) {
    TORCH_CHECK(percentile > 0.0 && percentile <= 100.0, kName, ".", fn, ": percentile should be in (0, 100], got ",
                percentile);
    return percentile;
  }
  static int64_t checked_bins(int64_t bins) {
    TORCH_CHECK(bins >= 1 && bins <= (1 << 24), kName, ": bins should be in [1, 16777216], got ", bins);
    return bins;
  }

  ObserverConfig cfg_;
  kernels::Histogram hist_;
  int64_t batches_ = 0;
  int64_t nonfloat_ = 0;
  kernels::RangeMethod method_ = kernels::RangeMethod::kMinMax;
  double percentile_ = kernels::kDefaultPercentile;
};

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  using Ptr = c10::intrusive_ptr<HistogramObserver>;
  m.class_<HistogramObserver>("HistogramObserver")
      .def(torch::init<int64_t, int64_t, int64_t, bool, double>())
      .def("forward", &HistogramObserver::forward)
      .def("calculate_qparams", &HistogramObserver::calculate_qparams)
      .def("set_method", &HistogramObserver::set_method)
      .def("method", &HistogramObserver::method)
      .def("percentile", &HistogramObserver::percentile)
      .def("estimate", &HistogramObserver::estimate)
      .def("merge", &HistogramObserver::merge)
      .def("histogram", &HistogramObserver::histogram)
      .def("quantile", &HistogramObserver::quantile)
      .def("min_val", &HistogramObserver::min_val)
      .def("max_val", &HistogramObserver::max_val)
      .def("nonfinite_count", &HistogramObserver::nonfinite_count)
      .def("batches", &HistogramObserver::batches)
      .def("nonfloat_count", &HistogramObserver::nonfloat_count)
      .def("reset", &HistogramObserver::reset)
      .def("describe", &HistogramObserver::describe)
      .def_pickle([](const Ptr& self) { return self->get_state(); },
                  [](HistogramObserver::State s) { return HistogramObserver::from_state(s); });
}

}  // namespace

c10::IValue make_histogram_observer(const ObserverSpec& spec) {
  const ObserverConfig& c = spec.config;
  auto obj = c10::make_intrusive<HistogramObserver>(spec.bins, c.quant_min, c.quant_max, c.symmetric, c.eps);
  obj->set_config(c);
  obj->set_method(spec.method, spec.percentile);
  return c10::IValue(obj);
}

}  // namespace tqx::observers
