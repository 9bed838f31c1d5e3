// Reduction kernels (min/max, bin indices): SIMD against the scalar reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/reduce.h"
#include "test_util.h"

namespace tqx {
namespace {

using kernels::Isa;
using kernels::ReduceKernels;

struct Variant {
  const char* name;
  Isa isa;
  const ReduceKernels* table;
};

std::vector<Variant> simd_variants() {
  return {{"avx2", Isa::kAVX2, kernels::reduce_kernels_avx2()},
          {"avx512", Isa::kAVX512, kernels::reduce_kernels_avx512()}};
}

TEST(MinMaxReference, SkipsNaNAndFlagsNonFinite) {
  const auto& ref = kernels::reduce_kernels_scalar();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  float mn, mx;
  std::vector<float> x = {1.0f, -2.0f, 3.0f};
  EXPECT_FALSE(ref.f32_minmax(3, x.data(), &mn, &mx));
  EXPECT_EQ(mn, -2.0f);
  EXPECT_EQ(mx, 3.0f);
  x = {nan, 1.0f, nan};
  EXPECT_TRUE(ref.f32_minmax(3, x.data(), &mn, &mx));
  EXPECT_EQ(mn, 1.0f);
  EXPECT_EQ(mx, 1.0f);
  x = {inf, 1.0f};
  EXPECT_TRUE(ref.f32_minmax(2, x.data(), &mn, &mx));
  EXPECT_EQ(mx, inf);
  EXPECT_FALSE(ref.f32_minmax(0, x.data(), &mn, &mx));
  EXPECT_EQ(mn, inf);
  EXPECT_EQ(mx, -inf);
}

TEST(MinMaxSimd, MatchesReference) {
  const auto& ref = kernels::reduce_kernels_scalar();
  for (const Variant& v : simd_variants()) {
    if (v.table == nullptr || !kernels::isa_supported(v.isa)) continue;
    for (int64_t n : testing::edge_sizes()) {
      for (int kind = 0; kind < 3; ++kind) {
        std::vector<float> x = kind == 0 ? testing::finite_values(n, 5 + n) : testing::stress_values(n, 0.1f, 9 + n);
        if (kind == 2 && n > 0) x[n - 1] = std::numeric_limits<float>::quiet_NaN();  // NaN in the tail
        float a, b, c, d;
        const bool fa = ref.f32_minmax(n, x.data(), &a, &b);
        const bool fb = v.table->f32_minmax(n, x.data(), &c, &d);
        ASSERT_EQ(fa, fb) << v.name << " n=" << n << " kind=" << kind;
        ASSERT_EQ(a, c) << v.name << " n=" << n << " kind=" << kind;
        ASSERT_EQ(b, d) << v.name << " n=" << n << " kind=" << kind;
      }
    }
  }
}

TEST(BinIndexSimd, MatchesReference) {
  const auto& ref = kernels::reduce_kernels_scalar();
  for (const Variant& v : simd_variants()) {
    if (v.table == nullptr || !kernels::isa_supported(v.isa)) continue;
    for (int64_t n : testing::edge_sizes()) {
      auto x = testing::finite_values(n, 21 + n, -4.0f, 6.0f);
      if (n > 3) {
        x[0] = -3.0f;  // exactly lo
        x[1] = 5.0f;   // exactly hi -> last bin
        x[2] = 1e30f;  // far above
      }
      std::vector<int32_t> want(n + 1, -7), got(n + 1, -7);
      ref.f32_bin_index(n, x.data(), -3.0f, 2048.0f / 8.0f, 2048, want.data());
      v.table->f32_bin_index(n, x.data(), -3.0f, 2048.0f / 8.0f, 2048, got.data());
      ASSERT_EQ(want, got) << v.name << " n=" << n;
      for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(want[i] >= 0 && want[i] < 2048);
    }
  }
}

}  // namespace
}  // namespace tqx
