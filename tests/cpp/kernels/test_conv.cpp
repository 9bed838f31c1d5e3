// int8 convolution and add reference kernels against independent integer/double arithmetic.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/conv.h"

namespace tqx {
namespace {

struct Case {
  int64_t n, h, w, c, oc, k, stride, pad, dil, groups;
};

TEST(ConvReference, MatchesDirectComputation) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
  for (const Case& t : {Case{1, 5, 5, 3, 4, 3, 1, 1, 1, 1}, Case{2, 7, 6, 8, 8, 3, 2, 1, 1, 8},
                        Case{1, 9, 9, 6, 9, 3, 1, 2, 2, 3}, Case{3, 1, 1, 16, 5, 1, 1, 0, 1, 1}}) {
    const int64_t oh = kernels::conv_out_size(t.h, t.k, t.stride, t.pad, t.dil);
    const int64_t ow = kernels::conv_out_size(t.w, t.k, t.stride, t.pad, t.dil);
    const int64_t cin_g = t.c / t.groups, cout_g = t.oc / t.groups;
    std::vector<uint8_t> x(t.n * t.h * t.w * t.c);
    std::vector<int8_t> w(t.oc * t.k * t.k * cin_g);
    for (auto& v : x) v = static_cast<uint8_t>(u8(rng));
    for (auto& v : w) v = static_cast<int8_t>(s8(rng));
    std::vector<float> mult(t.oc), bias(t.oc);
    for (int64_t c = 0; c < t.oc; ++c) {
      mult[c] = 1e-3f * static_cast<float>(c + 1);
      bias[c] = 0.5f * static_cast<float>(c) - 1.0f;
    }
    const kernels::ConvShape s{t.n, t.h, t.w, t.c, oh, ow, t.oc, t.k, t.k, t.stride, t.stride, t.pad, t.pad,
                               t.dil, t.dil, t.groups};
    for (bool relu : {false, true}) {
      const kernels::ConvEpilogue e{100, mult.data(), bias.data(), 120, relu ? 120 : 0, 255};
      std::vector<uint8_t> y(t.n * oh * ow * t.oc, 7);
      kernels::conv2d_u8s8_nhwc_scalar(s, x.data(), w.data(), e, y.data());
      for (int64_t n = 0; n < t.n; ++n)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j)
            for (int64_t oc = 0; oc < t.oc; ++oc) {
              int64_t acc = 0;  // independent: int64, explicit bounds, padding as zero real value
              const int64_t g = oc / cout_g;
              for (int64_t a = 0; a < t.k; ++a)
                for (int64_t b = 0; b < t.k; ++b) {
                  const int64_t ih = i * t.stride - t.pad + a * t.dil, iw = j * t.stride - t.pad + b * t.dil;
                  if (ih < 0 || iw < 0 || ih >= t.h || iw >= t.w) continue;
                  for (int64_t ic = 0; ic < cin_g; ++ic) {
                    acc += (int64_t(x[((n * t.h + ih) * t.w + iw) * t.c + g * cin_g + ic]) - 100) *
                           w[((oc * t.k + a) * t.k + b) * cin_g + ic];
                  }
                }
              const float v = static_cast<float>(acc) * mult[oc] + bias[oc];
              const double q = std::min(std::max(std::nearbyint(double(v)) + 120.0, relu ? 120.0 : 0.0), 255.0);
              ASSERT_EQ(int(y[((n * oh + i) * ow + j) * t.oc + oc]), int(q)) << "oc=" << oc << " relu=" << relu;
            }
    }
  }
}

TEST(AddReference, RequantizesTheSum) {
  const std::vector<uint8_t> a = {0, 10, 128, 255}, b = {255, 20, 128, 255};
  const kernels::AddParams p{0.5f, 0.25f, 1.0f / 0.5f, 10, 20, 5, 0, 255};
  std::vector<uint8_t> y(4);
  kernels::add_u8_scalar(4, a.data(), b.data(), p, y.data());
  for (int i = 0; i < 4; ++i) {
    const double real = (a[i] - 10) * 0.5 + (b[i] - 20) * 0.25;
    const double q = std::min(std::max(std::nearbyint(real / 0.5) + 5, 0.0), 255.0);
    EXPECT_EQ(int(y[i]), int(q)) << i;
  }
}

}  // namespace
}  // namespace tqx
