// Element-wise kernels: the multiply reference against hand-computed values, every SIMD variant the
// CPU has against it bit for bit, and the lookup tables against their float formulas.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/eltwise.h"
#include "kernels/lut.h"
#include "test_util.h"

namespace tqx {
namespace {

using kernels::Isa;
using kernels::MulParams;

std::vector<const kernels::EltwiseKernels*> simd_tables() {
  std::vector<const kernels::EltwiseKernels*> out;
  for (const auto* t :
       {kernels::eltwise_kernels_avx2(), kernels::eltwise_kernels_avx512(), kernels::eltwise_kernels_avx512_vbmi()}) {
    if (t != nullptr && kernels::isa_supported(t->isa)) out.push_back(t);
  }
  return out;
}

std::vector<uint8_t> bytes(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, 255);
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = i % 13 == 0 ? 0 : i % 17 == 0 ? 255 : static_cast<uint8_t>(d(rng));
  return v;
}

// Zero points at both extremes, ties, saturation (a large multiplier), and a fused ReLU (qmin = zy).
std::vector<MulParams> mul_params() {
  return {{0.05f * 0.07f / 0.1f, 110, 140, 90, 0, 255}, {1.0f, 0, 0, 0, 0, 255},
          {0.5f, 255, 255, 128, 0, 255},                {3.0f, 128, 0, 255, 0, 255},
          {1e-3f, 0, 255, 7, 0, 255},                   {0.02f, 128, 128, 128, 128, 255}};
}

TEST(EltwiseReference, MulRoundsHalfToEvenAndSaturates) {
  const auto& ref = kernels::eltwise_kernels_scalar();
  const MulParams p{0.5f, 10, 10, 100, 0, 255};
  // (a - 10) * (b - 10) * 0.5: 1 -> 0.5 -> 0 (even), 3 -> 1.5 -> 2, 5 -> 2.5 -> 2, 245*245/2 -> 255.
  const std::vector<uint8_t> a = {11, 13, 15, 255, 0, 10};
  const std::vector<uint8_t> b = {11, 11, 11, 255, 255, 200};
  std::vector<uint8_t> y(a.size());
  ref.u8_mul(6, a.data(), b.data(), p, y.data());
  EXPECT_EQ(y, (std::vector<uint8_t>{100, 102, 102, 255, 0, 100}));
}

TEST(EltwiseSimd, MulEqualsReferenceBitForBit) {
  const auto& ref = kernels::eltwise_kernels_scalar();
  for (const auto* t : simd_tables()) {
    for (const MulParams& p : mul_params()) {
      for (int64_t n : testing::edge_sizes()) {
        const auto a = bytes(n, 1), b = bytes(n, 2);
        std::vector<uint8_t> want(n), got(n, 77);
        ref.u8_mul(n, a.data(), b.data(), p, want.data());
        t->u8_mul(n, a.data(), b.data(), p, got.data());
        ASSERT_EQ(got, want) << kernels::isa_name(t->isa) << " n=" << n << " mult=" << p.multiplier;
      }
    }
  }
}

// Names a table in failure messages: the AVX-512 level has two lookups.
std::string table_name(const kernels::EltwiseKernels* t) {
  return std::string(kernels::isa_name(t->isa)) + (t == kernels::eltwise_kernels_avx512_vbmi() ? "+vbmi" : "");
}

// A reversed table, a random one, and tables that differ from their neighbours only in one row or
// one half (a lookup that picks the wrong row or half shows).
std::vector<std::array<uint8_t, 256>> lut_tables() {
  std::vector<std::array<uint8_t, 256>> out(4);
  std::mt19937 rng(9);
  for (int i = 0; i < 256; ++i) {
    out[0][i] = static_cast<uint8_t>(255 - i);
    out[1][i] = static_cast<uint8_t>(rng());
    out[2][i] = static_cast<uint8_t>(i / 16 == 9 ? 200 + i % 16 : 7);
    out[3][i] = static_cast<uint8_t>(i < 128 ? 1 : 254);
  }
  return out;
}

TEST(EltwiseSimd, LutEqualsReference) {
  for (const auto& table : lut_tables()) {
    for (const auto* t : simd_tables()) {
      for (int64_t n : testing::edge_sizes()) {
        auto x = bytes(n, 3);
        if (n == 256) {
          for (int i = 0; i < 256; ++i) x[i] = static_cast<uint8_t>(i);  // every entry once
        }
        std::vector<uint8_t> want(n), got(n + 1, 77);
        kernels::eltwise_kernels_scalar().u8_lut(n, x.data(), table.data(), want.data());
        t->u8_lut(n, x.data(), table.data(), got.data());
        ASSERT_EQ(got[n], 77) << table_name(t) << " n=" << n << ": wrote past the end";
        got.pop_back();
        ASSERT_EQ(got, want) << table_name(t) << " n=" << n;
      }
    }
  }
}

float quantize_ref(float y, float scale, int zp) {
  return std::fmin(std::fmax(std::nearbyint(y * (1.0f / scale)) + zp, 0.0f), 255.0f);
}

TEST(Lut, TablesFollowTheFloatFormulas) {
  const float si = 0.05f, so = 0.03f;
  const int zi = 120, zo = 40;
  uint8_t t[256];
  using F = kernels::LutFunction;
  for (F f : {F::kRequantize, F::kHardswish, F::kHardsigmoid, F::kSigmoid, F::kTanh}) {
    kernels::build_u8_lut(f, si, zi, so, zo, t);
    for (int q = 0; q < 256; ++q) {
      const float x = static_cast<float>(q - zi) * si;
      const float y = f == F::kRequantize    ? x
                      : f == F::kHardswish   ? x * std::fmin(std::fmax(x + 3.0f, 0.0f), 6.0f) / 6.0f
                      : f == F::kHardsigmoid ? std::fmin(std::fmax(x + 3.0f, 0.0f), 6.0f) / 6.0f
                      : f == F::kSigmoid     ? 1.0f / (1.0f + std::exp(-x))
                                             : std::tanh(x);
      ASSERT_EQ(static_cast<float>(t[q]), quantize_ref(y, so, zo)) << static_cast<int>(f) << " q=" << q;
    }
  }
  // Identical qparams: requantize is the identity; zero points at the extremes saturate.
  kernels::build_u8_lut(F::kRequantize, 0.1f, 0, 0.1f, 0, t);
  for (int q = 0; q < 256; ++q) ASSERT_EQ(t[q], q);
  kernels::build_u8_lut(F::kRequantize, 0.1f, 0, 0.05f, 255, t);
  EXPECT_EQ(t[0], 255);
  EXPECT_EQ(t[255], 255);
  kernels::build_u8_lut(F::kRequantize, 0.1f, 255, 0.05f, 0, t);
  EXPECT_EQ(t[0], 0);
  EXPECT_EQ(t[255], 0);
}

}  // namespace
}  // namespace tqx
