// Range setting from a histogram: error estimates against brute-force references, and each
// method's range on synthetic distributions, with properties a wrong implementation fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "kernels/histogram.h"
#include "kernels/qparams.h"
#include "kernels/range_search.h"
#include "test_util.h"

namespace tqx {
namespace {

using kernels::ClipRange;
using kernels::Histogram;
using kernels::QuantGrid;
using kernels::RangeMethod;

constexpr RangeMethod kMethods[] = {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kEntropy,
                                    RangeMethod::kMse, RangeMethod::kAuto};

Histogram hist_of(const std::vector<float>& x, int64_t bins = 2048) {
  Histogram h(bins);
  h.observe(x.data(), static_cast<int64_t>(x.size()));
  return h;
}

std::vector<float> gaussian(int64_t n, uint32_t seed, float mean = 0.0f, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

// Gaussian bulk plus a rare tail: every 10000th value is an outlier near +-`far`.
std::vector<float> gaussian_with_outliers(int64_t n, uint32_t seed, float far = 60.0f, bool both_sides = true) {
  auto v = gaussian(n, seed);
  for (size_t i = 0; i < v.size(); i += 10000) {
    const float sign = (both_sides && (i / 10000) % 2) ? -1.0f : 1.0f;
    v[i] = sign * (far - static_cast<float>(i % 7));
  }
  return v;
}

std::vector<float> relu(std::vector<float> v) {
  for (auto& x : v) x = std::max(x, 0.0f);
  return v;
}

QuantGrid u8(bool reduce_range = false) { return {0, reduce_range ? 127 : 255, false, kernels::kDefaultScaleEps}; }
QuantGrid s8_symmetric() { return {-128, 127, true, kernels::kDefaultScaleEps}; }

kernels::QParams qparams_of(const QuantGrid& g, double lo, double hi) {
  return kernels::choose_qparams(static_cast<float>(lo), static_cast<float>(hi), g.qmin, g.qmax, g.symmetric, g.eps);
}

// The value x comes back as after quantize + dequantize (Note [Rounding]: nearest, ties to even).
double round_trip(double x, double scale, int64_t zp, int64_t qmin, int64_t qmax) {
  const double q = std::clamp(std::nearbyint(x / scale) + static_cast<double>(zp), static_cast<double>(qmin),
                              static_cast<double>(qmax));
  return (q - static_cast<double>(zp)) * scale;
}

// Brute-force reference of the histogram estimate: each bin's count spread evenly over its
// edges clamped to [min, max], integrated with `per_bin` midpoint samples per bin.
double reference_sq_error(const Histogram& h, double scale, int64_t zp, int64_t qmin, int64_t qmax,
                          int per_bin = 4000) {
  double err = 0.0;
  for (int64_t k = 0; k < h.bins(); ++k) {
    const double c = h.counts()[k];
    if (c == 0.0) continue;
    const double a = std::clamp(h.lo() + h.width() * k, double(h.min()), double(h.max()));
    const double b = std::clamp(h.lo() + h.width() * (k + 1), double(h.min()), double(h.max()));
    double sum = 0.0;
    for (int i = 0; i < per_bin; ++i) {
      const double x = a + (b - a) * (i + 0.5) / per_bin;
      const double e = x - round_trip(x, scale, zp, qmin, qmax);
      sum += e * e;
    }
    err += c * sum / per_bin;
  }
  return err / h.total();
}

// Mean squared round-trip error of the samples themselves, through choose_qparams.
double sample_sq_error(const std::vector<float>& x, const QuantGrid& g, double lo, double hi) {
  const auto p = qparams_of(g, lo, hi);
  double err = 0.0;
  for (float v : x) {
    const double e = v - round_trip(v, p.scale, p.zero_point, g.qmin, g.qmax);
    err += e * e;
  }
  return err / static_cast<double>(x.size());
}

double estimated_error(const Histogram& h, const QuantGrid& g, double lo, double hi) {
  const auto p = qparams_of(g, lo, hi);
  return kernels::expected_sq_error(h, p.scale, p.zero_point, g.qmin, g.qmax);
}

double fraction_inside(const std::vector<float>& x, double lo, double hi) {
  int64_t in = 0;
  for (float v : x) in += (v >= lo && v <= hi) ? 1 : 0;
  return static_cast<double>(in) / static_cast<double>(x.size());
}

// ---- names ---------------------------------------------------------------------------------------

TEST(RangeSearch, MethodNamesRoundTrip) {
  for (RangeMethod m : kMethods) {
    RangeMethod back = RangeMethod::kMinMax;
    ASSERT_TRUE(kernels::parse_range_method(kernels::range_method_name(m), &back));
    EXPECT_EQ(back, m);
  }
  RangeMethod unchanged = RangeMethod::kMse;
  EXPECT_FALSE(kernels::parse_range_method("kl", &unchanged));
  EXPECT_EQ(unchanged, RangeMethod::kMse);
  // Saved observer states store these codes.
  EXPECT_EQ(static_cast<int>(RangeMethod::kMinMax), 0);
  EXPECT_EQ(static_cast<int>(RangeMethod::kAuto), 4);
}

TEST(RangeSearch, BadPercentileThrows) {
  const auto h = hist_of(gaussian(1000, 1));
  for (double p : {0.0, -1.0, 100.5, std::numeric_limits<double>::quiet_NaN()}) {
    EXPECT_THROW(kernels::choose_range(h, u8(), RangeMethod::kPercentile, p), std::invalid_argument) << p;
  }
}

// ---- error estimates ----------------------------------------------------------------------------

TEST(RangeSearch, ExpectedErrorMatchesBruteForce) {
  const std::vector<std::vector<float>> data = {gaussian(50000, 2), relu(gaussian(50000, 3)),
                                                gaussian_with_outliers(50000, 4),
                                                testing::finite_values(50000, 5, -1.0f, 3.0f)};
  for (size_t i = 0; i < data.size(); ++i) {
    const auto h = hist_of(data[i], 256);
    // Unclipped, clipped on both ends, a coarse grid with an off-centre zero point, symmetric.
    const std::vector<std::tuple<double, int64_t, int64_t, int64_t>> cases = {
        {(h.max() - std::min(h.min(), 0.0f)) / 255.0, 0, 0, 255},
        {0.01, 100, 0, 255},
        {0.3, 3, 0, 15},
        {2.0 * std::max(std::fabs(h.min()), std::fabs(h.max())) / 255.0, 0, -128, 127},
        {0.02, 64, 0, 127}};
    for (const auto& [scale, zp, qmin, qmax] : cases) {
      SCOPED_TRACE(::testing::Message() << "data " << i << " scale " << scale << " zp " << zp);
      const double want = reference_sq_error(h, scale, zp, qmin, qmax);
      const double got = kernels::expected_sq_error(h, scale, zp, qmin, qmax);
      EXPECT_NEAR(got, want, 1e-5 * want + 1e-15);
    }
  }
}

TEST(RangeSearch, ExpectedErrorPredictsQuantizedSamples) {
  // The histogram estimate against quantizing the observed values themselves.
  const auto x = gaussian_with_outliers(400000, 6);
  const auto h = hist_of(x);
  for (const auto& [lo, hi] : std::vector<std::pair<double, double>>{{h.min(), h.max()}, {-4.0, 4.0}, {-1.5, 2.5}}) {
    const double est = estimated_error(h, u8(), lo, hi);
    const double real = sample_sq_error(x, u8(), lo, hi);
    EXPECT_NEAR(est, real, 0.03 * real) << lo << " " << hi;
  }
  double ms = 0.0;
  for (float v : x) ms += double(v) * v;
  EXPECT_NEAR(kernels::mean_square(h), ms / x.size(), 1e-3 * ms / x.size());
  const auto p = qparams_of(u8(), -4.0, 4.0);
  const double db = kernels::sqnr_db(h, p.scale, p.zero_point, 0, 255);
  EXPECT_NEAR(db, 10.0 * std::log10(kernels::mean_square(h) / estimated_error(h, u8(), -4.0, 4.0)), 1e-9);
  EXPECT_NEAR(kernels::range_sqnr_db(h, u8(), -4.0, 4.0), db, 1e-12);
}

TEST(RangeSearch, EstimatesOfEmptyAndExactHistograms) {
  const Histogram empty(64);
  EXPECT_TRUE(std::isnan(kernels::expected_sq_error(empty, 0.1, 0, 0, 255)));
  EXPECT_TRUE(std::isnan(kernels::sqnr_db(empty, 0.1, 0, 0, 255)));
  // All values on a grid point: no error at all, infinite SQNR.
  const auto h = hist_of(std::vector<float>(1000, 0.5f), 64);
  EXPECT_EQ(kernels::expected_sq_error(h, 0.25, 0, 0, 255), 0.0);
  EXPECT_TRUE(std::isinf(kernels::sqnr_db(h, 0.25, 0, 0, 255)));
  // Off the grid: exactly (0.5 - 0.4)^2.
  EXPECT_NEAR(kernels::expected_sq_error(h, 0.4, 0, 0, 255), 0.01, 1e-12);
  // Clipped at 3 * 0.1: exactly (0.5 - 0.3)^2.
  EXPECT_NEAR(kernels::expected_sq_error(h, 0.1, 0, 0, 3), 0.04, 1e-12);
}

// ---- methods on synthetic distributions -----------------------------------------------------------

TEST(RangeSearch, MinMaxIsTheObservedRange) {
  const auto h = hist_of(gaussian_with_outliers(20000, 7));
  const ClipRange r = kernels::choose_range(h, u8(), RangeMethod::kMinMax);
  EXPECT_EQ(r.lo, h.min());
  EXPECT_EQ(r.hi, h.max());
  EXPECT_EQ(r.method, RangeMethod::kMinMax);
}

TEST(RangeSearch, PercentileRangeHoldsTheRequestedMass) {
  const auto signed_x = gaussian_with_outliers(1000000, 8);
  const auto relu_x = relu(gaussian(1000000, 9));
  struct Case {
    const std::vector<float>* x;
    QuantGrid grid;
  };
  for (const Case& c : {Case{&signed_x, u8()}, Case{&signed_x, s8_symmetric()}, Case{&relu_x, u8(true)}}) {
    const auto h = hist_of(*c.x);
    for (double pct : {99.0, 99.9, 99.99}) {
      SCOPED_TRACE(::testing::Message() << "pct " << pct << " symmetric " << c.grid.symmetric);
      const ClipRange r = kernels::choose_range(h, c.grid, RangeMethod::kPercentile, pct);
      const double inside = fraction_inside(*c.x, r.lo, r.hi);
      // Contains the mass asked for (to the resolution of a bin), and clips about the rest.
      EXPECT_GE(inside, pct / 100.0 - 2e-5);
      EXPECT_LE(inside, pct / 100.0 + 0.25 * (1.0 - pct / 100.0) + 2e-5);
      if (c.grid.symmetric) EXPECT_NEAR(-r.lo, r.hi, 1e-6 * r.hi);
    }
    EXPECT_EQ(kernels::choose_range(h, c.grid, RangeMethod::kPercentile, 100.0).hi, h.max());
  }
  // ReLU outputs: one tail to clip, the range starts at the observed 0.
  const auto r = kernels::choose_range(hist_of(relu_x), u8(), RangeMethod::kPercentile, 99.0);
  EXPECT_EQ(r.lo, 0.0);
  EXPECT_NEAR(r.hi, 2.326, 0.01);  // the 98th percentile of |N(0,1)|: half the values are 0
}

TEST(RangeSearch, MseBeatsMinMaxAndEveryNearbyRange) {
  const std::vector<std::vector<float>> data = {gaussian_with_outliers(200000, 10),
                                                gaussian_with_outliers(200000, 11, 60.0f, false),
                                                relu(gaussian_with_outliers(200000, 12)), gaussian(200000, 13, 1.0f)};
  for (size_t i = 0; i < data.size(); ++i) {
    const auto h = hist_of(data[i]);
    for (const QuantGrid& g : {u8(), u8(true), s8_symmetric()}) {
      SCOPED_TRACE(::testing::Message() << "data " << i << " qmax " << g.qmax << " symmetric " << g.symmetric);
      const ClipRange r = kernels::choose_range(h, g, RangeMethod::kMse);
      const double best = estimated_error(h, g, r.lo, r.hi);
      EXPECT_LT(best, estimated_error(h, g, h.min(), h.max()));
      // The search's fast model agrees with the estimate it is finished on.
      EXPECT_NEAR(kernels::mse_objective(h, g, r.lo, r.hi), best, 0.05 * best);
      // Every perturbation of either end (or of the threshold) is worse, up to the ripple that
      // zero-point rounding adds.
      for (double f : {0.9, 0.95, 0.98, 0.995, 1.005, 1.02, 1.05, 1.1}) {
        if (g.symmetric) {
          const double t = std::max(-r.lo, r.hi) * f;
          EXPECT_LE(best, estimated_error(h, g, -t, t) * (1.0 + 1e-3)) << f;
          continue;
        }
        if (r.hi * f <= h.max()) EXPECT_LE(best, estimated_error(h, g, r.lo, r.hi * f) * (1.0 + 1e-3)) << f;
        if (r.lo < 0.0 && r.lo * f >= h.min()) {
          EXPECT_LE(best, estimated_error(h, g, r.lo * f, r.hi) * (1.0 + 1e-3)) << f;
        }
      }
    }
  }
}

TEST(RangeSearch, MseIsNearTheBestOfAnExhaustiveScan) {
  // Every (lo, hi) on a 120 x 120 lattice, by the exact estimate: the search is at least as good.
  const std::vector<std::vector<float>> data = {gaussian_with_outliers(100000, 28, 30.0f),
                                                relu(gaussian_with_outliers(100000, 29, 20.0f))};
  for (const auto& x : data) {
    const auto h = hist_of(x);
    const ClipRange r = kernels::choose_range(h, u8(true), RangeMethod::kMse);
    const double found = estimated_error(h, u8(true), r.lo, r.hi);
    double best = std::numeric_limits<double>::infinity();
    const int steps = 120;
    for (int j = 0; j <= steps; ++j) {
      for (int k = 1; k <= steps; ++k) {
        best = std::min(best, estimated_error(h, u8(true), std::min(h.min(), 0.0f) * j / steps, h.max() * k / steps));
      }
    }
    EXPECT_LE(found, best * (1.0 + 1e-3));
  }
}

TEST(RangeSearch, MseFindsTheGlobalOptimumOfItsObjective) {
  // A bimodal, lopsided distribution where coordinate descent from minmax alone could stall:
  // an exhaustive scan of both ends finds nothing better than the search.
  auto x = gaussian(100000, 14, -3.0f, 0.3f);
  const auto y = gaussian(100000, 15, 8.0f, 2.0f);
  x.insert(x.end(), y.begin(), y.end());
  x.push_back(-40.0f);
  x.push_back(90.0f);
  const auto h = hist_of(x, 512);
  const QuantGrid g = u8();
  const ClipRange r = kernels::choose_range(h, g, RangeMethod::kMse);
  const double found = kernels::mse_objective(h, g, r.lo, r.hi);
  double best = std::numeric_limits<double>::infinity();
  const int steps = 300;
  for (int j = 0; j <= steps; ++j) {
    for (int k = 0; k <= steps; ++k) {
      best = std::min(best, kernels::mse_objective(h, g, h.min() * j / steps, h.max() * k / steps));
    }
  }
  EXPECT_LE(found, best * (1.0 + 1e-3));  // the scan's lattice differs from the search's
}

TEST(RangeSearch, MseKeepsUniformDataUnclipped) {
  const auto x = testing::finite_values(200000, 16, -2.0f, 6.0f);
  const auto h = hist_of(x);
  const ClipRange r = kernels::choose_range(h, u8(), RangeMethod::kMse);
  EXPECT_LE(r.lo, h.min() * 0.98);
  EXPECT_GE(r.hi, h.max() * 0.98);
}

// Straightforward TensorRT search (as MXNet/TVM write it, without smoothing), O(n^2).
int64_t reference_entropy_bins(const std::vector<double>& h, int64_t levels) {
  const int64_t n = static_cast<int64_t>(h.size());
  if (n <= levels) return n;
  double best = std::numeric_limits<double>::infinity();
  int64_t best_i = n;
  for (int64_t i = levels; i <= n; ++i) {
    std::vector<double> p(h.begin(), h.begin() + i);
    double outliers = 0.0;
    for (int64_t j = i; j < n; ++j) outliers += h[j];
    p[i - 1] += outliers;
    const int64_t m = i / levels;
    std::vector<double> q(i, 0.0);
    for (int64_t g = 0; g < levels; ++g) {
      const int64_t start = g * m, stop = g == levels - 1 ? i : start + m;
      double sum = 0.0;
      int64_t nonzero = 0;
      for (int64_t j = start; j < stop; ++j) {
        sum += h[j];
        nonzero += p[j] != 0.0;
      }
      for (int64_t j = start; j < stop; ++j) q[j] = (p[j] != 0.0 && nonzero) ? sum / nonzero : 0.0;
    }
    double ps = 0.0, qs = 0.0;
    for (int64_t j = 0; j < i; ++j) ps += p[j], qs += q[j];
    double kl = 0.0;
    for (int64_t j = 0; j < i && kl < std::numeric_limits<double>::infinity(); ++j) {
      if (p[j] == 0.0) continue;
      kl = q[j] == 0.0 ? std::numeric_limits<double>::infinity() : kl + p[j] / ps * std::log((p[j] / ps) / (q[j] / qs));
    }
    if (kl < best - 1e-12) best = kl, best_i = i;
  }
  return best_i;
}

TEST(RangeSearch, EntropySearchEqualsStraightforwardTensorRT) {
  std::mt19937 rng(17);
  for (int trial = 0; trial < 12; ++trial) {
    SCOPED_TRACE(trial);
    const int64_t n = 200 + 37 * trial, levels = trial % 3 == 0 ? 16 : trial % 3 == 1 ? 32 : 7;
    // Decaying counts with gaps (empty bins) and a sparse far tail.
    std::vector<double> h(n, 0.0);
    std::exponential_distribution<double> e(1.0 / (n / 8.0));
    for (int s = 0; s < 20000; ++s) h[std::min<int64_t>(static_cast<int64_t>(e(rng)), n - 1)] += 1.0;
    for (int64_t j = 0; j < n; j += 5 + trial) h[j] = 0.0;
    const int64_t got = kernels::entropy_threshold_bins(h.data(), n, levels);
    EXPECT_EQ(got, reference_entropy_bins(h, levels));
  }
  const std::vector<double> few = {1, 2, 3};
  EXPECT_EQ(kernels::entropy_threshold_bins(few.data(), 3, 128), 3);
  EXPECT_THROW(kernels::entropy_threshold_bins(few.data(), 3, 0), std::invalid_argument);
}

TEST(RangeSearch, EntropyClipsARareLongTail) {
  const auto signed_x = gaussian_with_outliers(500000, 18);
  const auto relu_x = relu(gaussian_with_outliers(500000, 19));
  for (const QuantGrid& g : {u8(), u8(true), s8_symmetric()}) {
    SCOPED_TRACE(::testing::Message() << "qmax " << g.qmax << " symmetric " << g.symmetric);
    const ClipRange s = kernels::choose_range(hist_of(signed_x), g, RangeMethod::kEntropy);
    EXPECT_GT(s.hi, 2.5);  // keeps the bulk ...
    EXPECT_LT(s.hi, 15.0);  // ... and clips the outliers near 60
    EXPECT_LT(s.lo, -2.5);
    EXPECT_GT(s.lo, -15.0);
    const ClipRange r = kernels::choose_range(hist_of(relu_x), g, RangeMethod::kEntropy);
    EXPECT_EQ(r.lo, 0.0);
    EXPECT_GT(r.hi, 2.5);
    EXPECT_LT(r.hi, 15.0);
  }
  // Lopsided signed data (a GELU-like negative side): the short side is not clipped away.
  auto x = relu(gaussian(500000, 20));
  for (size_t i = 1; i < x.size(); i += 2) x[i] = -0.1f * std::fabs(x[i - 1] - 0.3f);
  x[0] = 50.0f;
  const auto h = hist_of(x);
  const ClipRange r = kernels::choose_range(h, u8(), RangeMethod::kEntropy);
  EXPECT_LT(r.lo, 0.5 * h.min());
  EXPECT_LT(r.hi, 15.0);
}

TEST(RangeSearch, EntropyKeepsUniformDataMostlyUnclipped) {
  const auto h = hist_of(testing::finite_values(200000, 21, 0.0f, 4.0f));
  const ClipRange r = kernels::choose_range(h, u8(), RangeMethod::kEntropy);
  EXPECT_GE(r.hi, 0.9 * h.max());
}

TEST(RangeSearch, AutoPicksTheBestEstimatedSqnr) {
  const std::vector<std::vector<float>> data = {gaussian_with_outliers(100000, 22), testing::finite_values(100000, 23),
                                                relu(gaussian(100000, 24))};
  for (const auto& x : data) {
    const auto h = hist_of(x);
    for (const QuantGrid& g : {u8(), s8_symmetric()}) {
      const ClipRange a = kernels::choose_range(h, g, RangeMethod::kAuto, 99.9);
      EXPECT_NE(a.method, RangeMethod::kAuto);
      const double got = kernels::range_sqnr_db(h, g, a.lo, a.hi);
      for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kEntropy, RangeMethod::kMse}) {
        const ClipRange c = kernels::choose_range(h, g, m, 99.9);
        EXPECT_GE(got, kernels::range_sqnr_db(h, g, c.lo, c.hi)) << kernels::range_method_name(m);
        if (m == a.method) {
          EXPECT_EQ(a.lo, c.lo);
          EXPECT_EQ(a.hi, c.hi);
        }
      }
    }
  }
}

// ---- degenerate histograms ------------------------------------------------------------------------

TEST(RangeSearch, EmptyHistogramGivesTheObservedNothing) {
  const Histogram h(2048);
  for (RangeMethod m : kMethods) {
    const ClipRange r = kernels::choose_range(h, u8(), m);
    EXPECT_EQ(r.lo, std::numeric_limits<double>::infinity());
    EXPECT_EQ(r.hi, -std::numeric_limits<double>::infinity());
    const auto p = qparams_of(u8(), r.lo, r.hi);  // choose_qparams' defaults
    EXPECT_EQ(p.scale, 1.0f);
    EXPECT_EQ(p.zero_point, 0);
  }
}

TEST(RangeSearch, AllEqualValuesKeepTheValue) {
  for (float v : {3.0f, -2.5f, 0.0f}) {
    const auto h = hist_of(std::vector<float>(5000, v));
    for (const QuantGrid& g : {u8(), u8(true), s8_symmetric()}) {
      for (RangeMethod m : kMethods) {
        SCOPED_TRACE(::testing::Message() << v << " " << kernels::range_method_name(m) << " sym " << g.symmetric);
        const ClipRange r = kernels::choose_range(h, g, m);
        ASSERT_TRUE(std::isfinite(r.lo) && std::isfinite(r.hi));
        EXPECT_LE(r.lo, r.hi);
        // The value stays representable to within a rounding step of the full range.
        EXPECT_LE(std::sqrt(estimated_error(h, g, r.lo, r.hi)), std::fabs(v) / 100.0 + 1e-6);
      }
    }
  }
}

TEST(RangeSearch, SingleBinHistogram) {
  const auto x = testing::finite_values(10000, 25, -1.0f, 2.0f);
  const auto h = hist_of(x, 1);
  for (RangeMethod m : kMethods) {
    const ClipRange r = kernels::choose_range(h, u8(), m, 99.0);
    SCOPED_TRACE(kernels::range_method_name(m));
    EXPECT_LE(r.lo, r.hi);
    EXPECT_GE(r.lo, h.min());
    EXPECT_LE(r.hi, h.max());
    // Read as a uniform density, the one bin is best left (almost) unclipped.
    if (m != RangeMethod::kPercentile) EXPECT_GE(r.hi - r.lo, 0.95 * (h.max() - h.min()));
  }
}

TEST(RangeSearch, DegenerateGridKeepsTheObservedRange) {
  const auto h = hist_of(gaussian(1000, 26));
  for (RangeMethod m : kMethods) {
    const ClipRange r = kernels::choose_range(h, {5, 5, false, kernels::kDefaultScaleEps}, m);
    EXPECT_EQ(r.lo, h.min());
    EXPECT_EQ(r.hi, h.max());
  }
}

TEST(RangeSearch, DeterministicAndFastOn2048Bins) {
  const auto h = hist_of(gaussian_with_outliers(300000, 27));
  for (RangeMethod m : kMethods) {
    const ClipRange first = kernels::choose_range(h, u8(), m);
    const int reps = 20;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) {
      const ClipRange again = kernels::choose_range(h, u8(), m);
      ASSERT_EQ(again.lo, first.lo);
      ASSERT_EQ(again.hi, first.hi);
    }
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
    std::printf("[ timing   ] %-10s 2048 bins, asymmetric u8: %8.1f us\n", kernels::range_method_name(m), us);
    EXPECT_LT(us, 20000.0);  // generous: the machine is shared; typical figures are in the docs
  }
}

}  // namespace
}  // namespace tqx
