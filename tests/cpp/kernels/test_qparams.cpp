// Ranges and qparams choice: hand-computed cases and degenerate inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/qparams.h"

namespace tqx {
namespace {

using kernels::QFormat;

TEST(QuantRange, FormatsAndReduceRange) {
  auto r = kernels::quant_range(QFormat::kUInt8, false);
  EXPECT_EQ(r.qmin, 0);
  EXPECT_EQ(r.qmax, 255);
  r = kernels::quant_range(QFormat::kUInt8, true);
  EXPECT_EQ(r.qmin, 0);
  EXPECT_EQ(r.qmax, 127);
  r = kernels::quant_range(QFormat::kInt8, true);
  EXPECT_EQ(r.qmin, -64);
  EXPECT_EQ(r.qmax, 63);
  r = kernels::quant_range(QFormat::kInt16, false);
  EXPECT_EQ(r.qmin, -32768);
  EXPECT_EQ(r.qmax, 32767);
  r = kernels::quant_range(QFormat::kInt32, true);  // never reduced
  EXPECT_EQ(r.qmin, -2147483648LL);
  EXPECT_EQ(r.qmax, 2147483647LL);
  r = kernels::quant_range(QFormat::kUInt4, false);
  EXPECT_EQ(r.qmax, 15);
  r = kernels::quant_range(QFormat::kInt4, false);
  EXPECT_EQ(r.qmin, -8);
  EXPECT_EQ(r.qmax, 7);
}

TEST(ChooseQParams, AffineHandComputed) {
  // [-1, 1] over [0, 255]: scale = 2/255; in float32 -1 / scale is -127.49999, so the zero point
  // is 127 (PyTorch's observers give the same; real arithmetic would say 127.5 -> 128).
  const auto p = kernels::choose_qparams(-1.0f, 1.0f, 0, 255, false);
  EXPECT_EQ(p.scale, 2.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 127);
  // A positive-only range is widened to include zero.
  const auto q = kernels::choose_qparams(2.0f, 4.0f, 0, 255, false);
  EXPECT_FLOAT_EQ(q.scale, 4.0f / 255.0f);
  EXPECT_EQ(q.zero_point, 0);
  const auto s = kernels::choose_qparams(-6.0f, -2.0f, -128, 127, false);
  EXPECT_FLOAT_EQ(s.scale, 6.0f / 255.0f);
  EXPECT_EQ(s.zero_point, 127);
}

TEST(ChooseQParams, SymmetricHandComputed) {
  const auto p = kernels::choose_qparams(-3.0f, 1.0f, -128, 127, true);
  EXPECT_FLOAT_EQ(p.scale, 3.0f / 127.5f);
  EXPECT_EQ(p.zero_point, 0);
  const auto u = kernels::choose_qparams(-3.0f, 1.0f, 0, 255, true);
  EXPECT_EQ(u.zero_point, 128);
  const auto u4 = kernels::choose_qparams(-3.0f, 1.0f, 0, 15, true);
  EXPECT_EQ(u4.zero_point, 8);
}

TEST(ChooseQParams, DegenerateInputsGiveValidQParams) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    float lo, hi;
  };
  for (const Case c : {Case{0.0f, 0.0f}, Case{1e-30f, 1e-30f}, Case{-1e-40f, 1e-40f}, Case{nan, nan},
                       Case{nan, 3.0f}, Case{-inf, inf}, Case{-3e38f, 3e38f}, Case{5.0f, 5.0f},
                       Case{-inf, -inf}}) {
    for (bool symmetric : {false, true}) {
      for (auto r : {kernels::QRange{0, 255}, kernels::QRange{-128, 127}, kernels::QRange{-2147483648LL, 2147483647LL}}) {
        const auto p = kernels::choose_qparams(c.lo, c.hi, r.qmin, r.qmax, symmetric);
        EXPECT_TRUE(std::isfinite(p.scale) && p.scale > 0.0f) << c.lo << " " << c.hi << " scale=" << p.scale;
        EXPECT_TRUE(std::isfinite(1.0f / p.scale)) << c.lo << " " << c.hi;
        EXPECT_GE(p.zero_point, r.qmin);
        EXPECT_LE(p.zero_point, r.qmax);
      }
    }
  }
  // All zeros: scale falls back to eps, zero point maps 0 exactly.
  const auto z = kernels::choose_qparams(0.0f, 0.0f, 0, 255, false);
  EXPECT_FLOAT_EQ(z.scale, kernels::kDefaultScaleEps);
  EXPECT_EQ(z.zero_point, 0);
  // Nothing observed (min > max): PyTorch's defaults.
  const auto none = kernels::choose_qparams(inf, -inf, 0, 255, false);
  EXPECT_EQ(none.scale, 1.0f);
  EXPECT_EQ(none.zero_point, 0);
  const auto none_signed = kernels::choose_qparams(inf, -inf, 3, 255, false);
  EXPECT_EQ(none_signed.zero_point, 3);
}

TEST(ChooseQParams, PerChannelEqualsPerTensorCalls) {
  const float lo[3] = {-1.0f, 0.0f, -0.25f};
  const float hi[3] = {2.0f, 0.5f, 0.0f};
  float scale[3];
  int64_t zp[3];
  kernels::choose_qparams_per_channel(lo, hi, 3, -128, 127, true, kernels::kDefaultScaleEps, scale, zp);
  for (int c = 0; c < 3; ++c) {
    const auto p = kernels::choose_qparams(lo[c], hi[c], -128, 127, true);
    EXPECT_EQ(scale[c], p.scale);
    EXPECT_EQ(zp[c], p.zero_point);
  }
}

}  // namespace
}  // namespace tqx
