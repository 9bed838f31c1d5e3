// LSQ gradient-term kernels: the scalar reference against hand-computed values, and every SIMD
// variant the CPU has against the reference, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/fake_quantize_grad.h"
#include "test_util.h"

namespace tqx {
namespace {

using kernels::FakeQuantizeGradKernels;
using kernels::Isa;
using kernels::LearnableGradParams;

struct Variant {
  const char* name;
  Isa isa;
  const FakeQuantizeGradKernels* table;
};

std::vector<Variant> simd_variants() {
  return {{"avx2", Isa::kAVX2, kernels::fake_quantize_grad_kernels_avx2()},
          {"avx512", Isa::kAVX512, kernels::fake_quantize_grad_kernels_avx512()}};
}

LearnableGradParams params(float scale, int64_t zp, int64_t qmin, int64_t qmax, float gf) {
  return LearnableGradParams{scale, 1.0f / scale, zp, qmin, qmax, gf};
}

// 8-bit and 4-bit ranges, zero point at both extremes, a grad factor that is not a power of two,
// tiny and large scales, a 32-bit range, and a zero point beyond 2^24 (the SIMD fallback).
std::vector<LearnableGradParams> param_sets() {
  return {params(0.05f, 128, 0, 255, 1.0f),          params(0.1f, 0, 0, 255, 0.0123f),
          params(0.02f, 255, 0, 255, 1.0f),          params(1.0f / 3.0f, -128, -128, 127, 0.7f),
          params(0.3f, 127, -128, 127, 1.0f),        params(0.3f, 0, -8, 7, 0.25f),
          params(0.0123f, 3, 0, 15, 1.0f),           params(1e-6f, 10, 0, 255, 1.0f),
          params(3e4f, 100, 0, 255, 1.0f),           params(0.25f, -32768, -32768, 32767, 1.0f),
          params(1e-3f, 0, -2147483648LL, 2147483647LL, 1.0f),
          params(7.0f, 20000001, -2147483648LL, 2147483647LL, 0.5f)};
}

TEST(FakeQuantizeGradReference, HandComputedTerms) {
  const FakeQuantizeGradKernels& ref = kernels::fake_quantize_grad_kernels_scalar();
  // scale 0.5, zp 2, range [0, 7]: representable x in [-1, 2.5].
  const LearnableGradParams p = params(0.5f, 2, 0, 7, 0.5f);
  const std::vector<float> x = {0.3f, -5.0f, 9.0f, std::numeric_limits<float>::quiet_NaN(), 0.25f};
  const std::vector<float> dy = {2.0f, -3.0f, 4.0f, 1.0f, 1.0f};
  std::vector<float> dx(5), ds(5), dz(5);
  ref.f32_fake_quantize_learnable_grad(5, x.data(), dy.data(), dx.data(), ds.data(), dz.data(), p);
  // 0.3: xq = nearbyint(2.6) = 3, fq = 0.5, ds = 2 * (0.5 - 0.3) * 2 * 0.5 in float32.
  EXPECT_EQ(dx[0], 2.0f);
  EXPECT_EQ(ds[0], 2.0f * (0.5f - 0.3f) * 2.0f * 0.5f);
  EXPECT_EQ(dz[0], 0.0f);
  // below: dx = -3 * 0 = -0, ds = -3 * (0 - 2) * 0.5, dz = 3 * 0.5 * 0.5.
  EXPECT_TRUE(testing::same_bits(dx[1], -0.0f));
  EXPECT_EQ(ds[1], 3.0f);
  EXPECT_EQ(dz[1], 0.75f);
  // above: ds = 4 * (7 - 2) * 0.5, dz = -4 * 0.5 * 0.5.
  EXPECT_EQ(dx[2], 0.0f);
  EXPECT_EQ(ds[2], 10.0f);
  EXPECT_EQ(dz[2], -1.0f);
  // NaN is outside and counts as above.
  EXPECT_EQ(dx[3], 0.0f);
  EXPECT_EQ(ds[3], 2.5f);
  EXPECT_EQ(dz[3], -0.25f);
  // A tie (2 + 0.5 = 2.5) rounds to even: xq = 2, fq = 0, ds = 1 * (0 - 0.25) * 2 * 0.5.
  EXPECT_EQ(ds[4], -0.25f);
}

TEST(FakeQuantizeGradSimd, MatchesReferenceBitForBit) {
  const FakeQuantizeGradKernels& ref = kernels::fake_quantize_grad_kernels_scalar();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const Variant& v : simd_variants()) {
    if (v.table == nullptr || !kernels::isa_supported(v.isa)) continue;
    int pi = 0;
    for (const LearnableGradParams& p : param_sets()) {
      ++pi;
      for (int64_t n : testing::edge_sizes()) {
        // x: ties, saturation, signed zeros, NaN and Inf around the grid; dy: random with signs,
        // plus -0, NaN and Inf in some lanes.
        const std::vector<float> x = testing::stress_values(n, p.scale, 3 + static_cast<uint32_t>(n + pi));
        std::vector<float> dy = testing::finite_values(n, 17 + static_cast<uint32_t>(n), -2.0f, 2.0f);
        for (int64_t i = 5; i < n; i += 13) dy[i] = (i % 3 == 0) ? -0.0f : (i % 3 == 1) ? nan : -inf;
        const size_t len = static_cast<size_t>(n) + 1;  // one guard element past the end
        std::vector<float> dx0(len, 7.0f), ds0(len, 7.0f), dz0(len, 7.0f);
        std::vector<float> dx1(len, 7.0f), ds1(len, 7.0f), dz1(len, 7.0f);
        ref.f32_fake_quantize_learnable_grad(n, x.data(), dy.data(), dx0.data(), ds0.data(), dz0.data(), p);
        v.table->f32_fake_quantize_learnable_grad(n, x.data(), dy.data(), dx1.data(), ds1.data(), dz1.data(), p);
        for (size_t i = 0; i < len; ++i) {
          ASSERT_TRUE(testing::same_bits(dx0[i], dx1[i]))
              << v.name << " params#" << pi << " n=" << n << " i=" << i << " x=" << x[i] << " dx " << dx0[i]
              << " vs " << dx1[i];
          ASSERT_TRUE(testing::same_bits(ds0[i], ds1[i]))
              << v.name << " params#" << pi << " n=" << n << " i=" << i << " x=" << x[i] << " dscale " << ds0[i]
              << " vs " << ds1[i];
          ASSERT_TRUE(testing::same_bits(dz0[i], dz1[i]))
              << v.name << " params#" << pi << " n=" << n << " i=" << i << " x=" << x[i] << " dzp " << dz0[i]
              << " vs " << dz1[i];
        }
      }
    }
  }
}

TEST(FakeQuantizeGradDispatch, LadderEndsInReference) {
  EXPECT_EQ(&kernels::fake_quantize_grad_kernels_for(Isa::kScalar), &kernels::fake_quantize_grad_kernels_scalar());
  for (const Variant& v : simd_variants()) {
    if (v.table == nullptr) continue;
    EXPECT_EQ(&kernels::fake_quantize_grad_kernels_for(v.isa), v.table) << v.name;
  }
}

}  // namespace
}  // namespace tqx
