// Histogram: exact growth by re-binning, merging, quantiles and saved state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/histogram.h"
#include "test_util.h"

namespace tqx {
namespace {

double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

TEST(Histogram, CountsEveryFiniteValueOnce) {
  kernels::Histogram h(64);
  const auto x = testing::finite_values(10000, 1);
  h.observe(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(h.total(), 10000.0);
  EXPECT_EQ(sum(h.counts()), 10000.0);
  EXPECT_EQ(h.min(), *std::min_element(x.begin(), x.end()));
  EXPECT_EQ(h.max(), *std::max_element(x.begin(), x.end()));
  EXPECT_LE(h.lo(), h.min());
  EXPECT_GE(h.hi(), h.max());
}

TEST(Histogram, GrowthKeepsEveryCountAndCoversNewRange) {
  kernels::Histogram h(128);
  const auto a = testing::finite_values(5000, 2, 0.0f, 1.0f);
  const auto b = testing::finite_values(5000, 3, -50.0f, 20.0f);
  h.observe(a.data(), 5000);
  const std::vector<double> before = h.counts();
  const double lo = h.lo(), width = h.width();
  h.observe(b.data(), 5000);
  EXPECT_EQ(sum(h.counts()), 10000.0);
  EXPECT_LE(h.lo(), h.min());
  EXPECT_GE(h.hi(), h.max());
  EXPECT_LT(h.min(), -49.0f);
  // The new width is a power-of-two multiple of the old one and the old edges stay edges.
  const double ratio = h.width() / width;
  EXPECT_EQ(ratio, std::exp2(std::round(std::log2(ratio))));
  const double shift = (lo - h.lo()) / width;
  EXPECT_NEAR(shift, std::round(shift), 1e-6);
  // Re-binning the first batch alone into the new grid gives integer counts (nothing split).
  kernels::Histogram only_a(128);
  only_a.observe(a.data(), 5000);
  only_a.merge(kernels::Histogram(128));  // merging an empty histogram changes nothing
  EXPECT_EQ(only_a.counts(), before);
}

TEST(Histogram, SkipsNonFiniteValues) {
  kernels::Histogram h(16);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {1.0f, nan, 2.0f, inf, -inf, 3.0f};
  h.observe(x.data(), 6);
  EXPECT_EQ(h.total(), 3.0);
  EXPECT_EQ(h.nonfinite(), 3);
  EXPECT_EQ(h.min(), 1.0f);
  EXPECT_EQ(h.max(), 3.0f);
}

TEST(Histogram, ConstantInputHasValidRange) {
  kernels::Histogram h(32);
  const std::vector<float> x(100, 0.5f);
  h.observe(x.data(), 100);
  EXPECT_GT(h.width(), 0.0);
  EXPECT_EQ(sum(h.counts()), 100.0);
  const std::vector<float> y = {-1.0f, 2.0f};
  h.observe(y.data(), 2);
  EXPECT_EQ(sum(h.counts()), 102.0);
  EXPECT_LE(h.lo(), -1.0);
  EXPECT_GE(h.hi(), 2.0);
}

TEST(Histogram, MergeEqualsObservingTogether) {
  const auto a = testing::finite_values(20000, 4, -1.0f, 1.0f);
  const auto b = testing::finite_values(20000, 5, -3.0f, 0.5f);
  kernels::Histogram ha(256), hb(256), both(256);
  ha.observe(a.data(), 20000);
  hb.observe(b.data(), 20000);
  both.observe(a.data(), 20000);
  both.observe(b.data(), 20000);
  ha.merge(hb);
  EXPECT_EQ(ha.total(), both.total());
  EXPECT_NEAR(sum(ha.counts()), 40000.0, 1e-6);
  EXPECT_EQ(ha.min(), both.min());
  EXPECT_EQ(ha.max(), both.max());
  for (double q : {0.01, 0.1, 0.5, 0.9, 0.99}) {
    EXPECT_NEAR(ha.quantile(q), both.quantile(q), 0.05) << "q=" << q;
  }
}

TEST(Histogram, QuantilesOfUniformData) {
  kernels::Histogram h(1024);
  std::vector<float> x(100001);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) / 100000.0f;  // uniform on [0, 1]
  h.observe(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_NEAR(h.quantile(0.5), 0.5, 2e-3);
  EXPECT_NEAR(h.quantile(0.99), 0.99, 2e-3);
  EXPECT_EQ(h.quantile(0.0), 0.0);
  EXPECT_EQ(h.quantile(1.0), 1.0);
}

TEST(Histogram, StateRoundTrip) {
  kernels::Histogram h(64);
  const auto x = testing::finite_values(777, 6);
  h.observe(x.data(), 777);
  const auto copy = kernels::Histogram::from_state(h.header(), h.counts());
  EXPECT_EQ(copy.counts(), h.counts());
  EXPECT_EQ(copy.lo(), h.lo());
  EXPECT_EQ(copy.width(), h.width());
  EXPECT_EQ(copy.min(), h.min());
  EXPECT_EQ(copy.max(), h.max());
  EXPECT_THROW(kernels::Histogram::from_state({1.0}, h.counts()), std::invalid_argument);
  EXPECT_THROW(kernels::Histogram(0), std::invalid_argument);
}

}  // namespace
}  // namespace tqx
