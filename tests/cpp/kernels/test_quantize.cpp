// Quantize-family kernels: the scalar reference against hand-computed values, and every SIMD
// variant the CPU has against the reference, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/quantize.h"
#include "test_util.h"

namespace tqx {
namespace {

using kernels::AffineParams;
using kernels::Isa;
using kernels::QuantizeKernels;

struct Variant {
  const char* name;
  Isa isa;
  const QuantizeKernels* table;
};

std::vector<Variant> simd_variants() {
  return {{"avx2", Isa::kAVX2, kernels::quantize_kernels_avx2()},
          {"avx512", Isa::kAVX512, kernels::quantize_kernels_avx512()}};
}

// Parameter sets: ordinary, zero point at both extremes, tiny and huge scales, 4-bit range.
std::vector<AffineParams> u8_params() {
  return {kernels::make_affine_params(0.05f, 128, 0, 255), kernels::make_affine_params(0.1f, 0, 0, 255),
          kernels::make_affine_params(0.02f, 255, 0, 255), kernels::make_affine_params(1.0f, 3, 0, 255),
          kernels::make_affine_params(1e-6f, 10, 0, 255), kernels::make_affine_params(3e4f, 100, 0, 255),
          kernels::make_affine_params(0.3f, 7, 0, 15), kernels::make_affine_params(0.07f, 64, 0, 127)};
}
std::vector<AffineParams> s8_params() {
  return {kernels::make_affine_params(0.05f, 0, -128, 127), kernels::make_affine_params(0.1f, -128, -128, 127),
          kernels::make_affine_params(0.02f, 127, -128, 127), kernels::make_affine_params(0.3f, 0, -8, 7),
          kernels::make_affine_params(1.0f, -5, -64, 63)};
}
std::vector<AffineParams> s16_params() {
  return {kernels::make_affine_params(0.001f, 0, -32768, 32767),
          kernels::make_affine_params(0.5f, -32768, -32768, 32767),
          kernels::make_affine_params(0.25f, 32767, -32768, 32767)};
}

TEST(QuantizeReference, RoundsHalfToEvenAndSaturates) {
  const QuantizeKernels& ref = kernels::quantize_kernels_scalar();
  const AffineParams p = kernels::make_affine_params(1.0f, 10, 0, 255);
  const std::vector<float> x = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 300.0f, -300.0f,
                                std::numeric_limits<float>::quiet_NaN(),
                                std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                                1e30f, 244.4f, 245.6f};
  const std::vector<uint8_t> expect = {10, 12, 12, 10, 8, 255, 0, 0, 255, 0, 255, 254, 255};
  std::vector<uint8_t> y(x.size());
  ref.f32_u8_quantize(static_cast<int64_t>(x.size()), x.data(), y.data(), p);
  EXPECT_EQ(y, expect);
}

TEST(QuantizeReference, MultipliesByTheFloatReciprocal) {
  // 0.1f's reciprocal is not exactly 10; Note [Rounding] requires x * (1/scale), not x / scale.
  const float scale = 0.1f;
  const AffineParams p = kernels::make_affine_params(scale, 0, -128, 127);
  const float inv = 1.0f / scale;
  for (int k = -100; k <= 100; ++k) {
    const float x = (static_cast<float>(k) + 0.5f) * scale;
    int8_t q;
    kernels::quantize_kernels_scalar().f32_s8_quantize(1, &x, &q, p);
    const float expected = std::fmin(std::fmax(std::nearbyint(x * inv), -128.0f), 127.0f);
    EXPECT_EQ(static_cast<int>(q), static_cast<int>(expected)) << "x=" << x;
  }
}

TEST(QuantizeReference, DequantizeAndRequantizeFollowTheRule) {
  const QuantizeKernels& ref = kernels::quantize_kernels_scalar();
  const AffineParams p = kernels::make_affine_params(0.5f, 3, 0, 255);
  const std::vector<uint8_t> q = {0, 3, 4, 255};
  std::vector<float> y(q.size());
  ref.u8_f32_dequantize(4, q.data(), y.data(), p);
  EXPECT_EQ(y, (std::vector<float>{-1.5f, 0.0f, 0.5f, 126.0f}));

  const AffineParams r = kernels::make_requant_params(0.25f, 5, 0, 255);
  const std::vector<int32_t> acc = {0, 2, 6, 10, -20, -100, 2000, 1 << 30};
  std::vector<uint8_t> out(acc.size());
  ref.s32_u8_requantize(8, acc.data(), out.data(), r);
  // 2 * 0.25 = 0.5 -> 0 (even), 6 * 0.25 = 1.5 -> 2, 10 * 0.25 = 2.5 -> 2.
  EXPECT_EQ(out, (std::vector<uint8_t>{5, 5, 7, 7, 0, 0, 255, 255}));
}

TEST(QuantizeReference, Int32DequantizeSubtractsExactly) {
  // float(q) - float(zp) would give -256 steps here; the integer difference is -255.
  const AffineParams p = kernels::make_affine_params(0.5f, INT32_MAX, INT32_MIN, INT32_MAX);
  const int32_t q[2] = {INT32_MAX - 255, INT32_MIN};
  float y[2];
  for (const QuantizeKernels* k : {&kernels::quantize_kernels_scalar(), &kernels::quantize_kernels()}) {
    k->s32_f32_dequantize(2, q, y, p);
    EXPECT_EQ(y[0], -127.5f);
    EXPECT_EQ(y[1], static_cast<float>(-4294967295.0 * 0.5));
  }
}

TEST(QuantizeReference, FakeQuantizeMatchesQuantizeThenDequantize) {
  const QuantizeKernels& ref = kernels::quantize_kernels_scalar();
  for (const AffineParams& p : u8_params()) {
    const auto x = testing::stress_values(257, p.scale, 7);
    std::vector<uint8_t> q(x.size());
    std::vector<float> dq(x.size()), fq(x.size());
    std::vector<uint8_t> mask(x.size());
    ref.f32_u8_quantize(257, x.data(), q.data(), p);
    ref.u8_f32_dequantize(257, q.data(), dq.data(), p);
    ref.f32_fake_quantize(257, x.data(), fq.data(), mask.data(), p);
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_TRUE(testing::same_bits(dq[i], fq[i])) << "x=" << x[i] << " dq=" << dq[i] << " fq=" << fq[i];
      const float v = std::nearbyint(x[i] * p.inv_scale) + static_cast<float>(p.zero_point);
      const bool inside = v >= p.qmin && v <= p.qmax;
      EXPECT_EQ(mask[i], inside ? 1 : 0) << "x=" << x[i];
    }
  }
}

template <typename Q, typename Get>
void expect_quantize_matches(const std::vector<AffineParams>& params, Get get) {
  const QuantizeKernels& ref = kernels::quantize_kernels_scalar();
  for (const Variant& v : simd_variants()) {
    if (v.table == nullptr || !kernels::isa_supported(v.isa)) continue;
    for (const AffineParams& p : params) {
      for (int64_t n : testing::edge_sizes()) {
        const auto x = testing::stress_values(n, p.scale, static_cast<uint32_t>(n));
        std::vector<Q> want(n + 1, Q(0x5A)), got(n + 1, Q(0x5A));
        get(ref)(n, x.data(), want.data(), p);
        get(*v.table)(n, x.data(), got.data(), p);
        ASSERT_EQ(want, got) << v.name << " n=" << n << " scale=" << p.scale << " zp=" << p.zero_point;
      }
    }
  }
}

TEST(QuantizeSimd, F32ToU8BitExact) {
  expect_quantize_matches<uint8_t>(u8_params(), [](const QuantizeKernels& k) { return k.f32_u8_quantize; });
}
TEST(QuantizeSimd, F32ToS8BitExact) {
  expect_quantize_matches<int8_t>(s8_params(), [](const QuantizeKernels& k) { return k.f32_s8_quantize; });
}
TEST(QuantizeSimd, F32ToS16BitExact) {
  expect_quantize_matches<int16_t>(s16_params(), [](const QuantizeKernels& k) { return k.f32_s16_quantize; });
}
TEST(QuantizeSimd, F32ToS32BitExact) {
  const std::vector<AffineParams> p = {kernels::make_affine_params(1e-3f, 0, INT32_MIN, INT32_MAX),
                                       kernels::make_affine_params(1e-9f, 17, INT32_MIN, INT32_MAX)};
  expect_quantize_matches<int32_t>(p, [](const QuantizeKernels& k) { return k.f32_s32_quantize; });
}

// An NCHW image quantized straight into NHWC: each byte is the reference quantize of its float,
// at its channels-last place, for any channel count (1, RGB, more than a block holds), any pixel
// range (block tails, a range starting mid-image) and every table.
TEST(QuantizeSimd, PlanesToPixelsIsTheReferenceQuantizeTransposed) {
  const QuantizeKernels& ref = kernels::quantize_kernels_scalar();
  std::vector<const QuantizeKernels*> tables = {&ref};
  for (const Variant& v : simd_variants()) {
    if (v.table != nullptr && kernels::isa_supported(v.isa)) tables.push_back(v.table);
  }
  const AffineParams p = kernels::make_affine_params(0.05f, 128, 0, 255);
  for (int64_t channels : {1, 3, 5, 70}) {
    const int64_t hw = 601;
    const auto x = testing::stress_values(channels * hw, p.scale, static_cast<uint32_t>(channels));
    std::vector<uint8_t> want(channels * hw);
    for (int64_t c = 0; c < channels; ++c) {
      std::vector<uint8_t> plane(hw);
      ref.f32_u8_quantize(hw, x.data() + c * hw, plane.data(), p);
      for (int64_t i = 0; i < hw; ++i) want[i * channels + c] = plane[i];
    }
    for (const QuantizeKernels* k : tables) {
      for (const auto& [b, e] : {std::pair<int64_t, int64_t>{0, hw}, {0, 256}, {37, 600}, {300, 601}}) {
        std::vector<uint8_t> got(channels * hw, 0x5A);
        kernels::f32_planes_to_u8_pixels(*k, channels, hw, x.data(), got.data(), b, e, p);
        for (int64_t i = 0; i < channels * hw; ++i) {
          const bool inside = i / channels >= b && i / channels < e;
          ASSERT_EQ(got[i], inside ? want[i] : 0x5A) << "channels=" << channels << " range=[" << b << ", " << e
                                                     << ") at " << i << " isa=" << kernels::isa_name(k->isa);
        }
      }
    }
  }
}

template <typename Q, typename Get>
void expect_dequantize_matches(const std::vector<AffineParams>& params, Get get) {
  const QuantizeKernels& ref = kernels::quantize_kernels_scalar();
  std::mt19937 rng(3);
  for (const Variant& v : simd_variants()) {
    if (v.table == nullptr || !kernels::isa_supported(v.isa)) continue;
    for (const AffineParams& p : params) {
      for (int64_t n : testing::edge_sizes()) {
        std::vector<Q> q(n);
        std::uniform_int_distribution<int64_t> d(p.qmin, p.qmax);
        for (auto& e : q) e = static_cast<Q>(d(rng));
        if (n > 0) q[0] = static_cast<Q>(p.qmin);
        if (n > 1) q[n - 1] = static_cast<Q>(p.qmax);
        std::vector<float> want(n + 1, 7.0f), got(n + 1, 7.0f);
        get(ref)(n, q.data(), want.data(), p);
        get(*v.table)(n, q.data(), got.data(), p);
        for (int64_t i = 0; i <= n; ++i) {
          ASSERT_TRUE(testing::same_bits(want[i], got[i])) << v.name << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

TEST(DequantizeSimd, AllTypesBitExact) {
  expect_dequantize_matches<uint8_t>(u8_params(), [](const QuantizeKernels& k) { return k.u8_f32_dequantize; });
  expect_dequantize_matches<int8_t>(s8_params(), [](const QuantizeKernels& k) { return k.s8_f32_dequantize; });
  expect_dequantize_matches<int16_t>(s16_params(), [](const QuantizeKernels& k) { return k.s16_f32_dequantize; });
  const std::vector<AffineParams> p32 = {kernels::make_affine_params(1e-3f, 0, INT32_MIN, INT32_MAX),
                                         kernels::make_affine_params(0.5f, -7, INT32_MIN, INT32_MAX)};
  expect_dequantize_matches<int32_t>(p32, [](const QuantizeKernels& k) { return k.s32_f32_dequantize; });
}

TEST(RequantizeSimd, BitExact) {
  const QuantizeKernels& ref = kernels::quantize_kernels_scalar();
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> d(-(1 << 20), 1 << 20);
  const std::vector<AffineParams> params = {kernels::make_requant_params(1.0f / 4096.0f, 128, 0, 255),
                                            kernels::make_requant_params(3.3e-4f, 0, 0, 255),
                                            kernels::make_requant_params(0.0123f, -3, -128, 127)};
  for (const Variant& v : simd_variants()) {
    if (v.table == nullptr || !kernels::isa_supported(v.isa)) continue;
    for (const AffineParams& p : params) {
      for (int64_t n : testing::edge_sizes()) {
        std::vector<int32_t> acc(n);
        for (auto& a : acc) a = d(rng);
        if (n > 2) {
          acc[0] = INT32_MAX;
          acc[1] = INT32_MIN;
          acc[2] = (1 << 24) + 1;  // not exactly representable as float
        }
        if (p.qmin == 0) {
          std::vector<uint8_t> want(n + 1, 9), got(n + 1, 9);
          ref.s32_u8_requantize(n, acc.data(), want.data(), p);
          v.table->s32_u8_requantize(n, acc.data(), got.data(), p);
          ASSERT_EQ(want, got) << v.name << " n=" << n;
        } else {
          std::vector<int8_t> want(n + 1, 9), got(n + 1, 9);
          ref.s32_s8_requantize(n, acc.data(), want.data(), p);
          v.table->s32_s8_requantize(n, acc.data(), got.data(), p);
          ASSERT_EQ(want, got) << v.name << " n=" << n;
        }
      }
    }
  }
}

TEST(FakeQuantizeSimd, OutputAndMaskBitExact) {
  const QuantizeKernels& ref = kernels::quantize_kernels_scalar();
  std::vector<AffineParams> params = u8_params();
  for (const AffineParams& p : s8_params()) params.push_back(p);
  for (const Variant& v : simd_variants()) {
    if (v.table == nullptr || !kernels::isa_supported(v.isa)) continue;
    for (const AffineParams& p : params) {
      for (int64_t n : testing::edge_sizes()) {
        const auto x = testing::stress_values(n, p.scale, static_cast<uint32_t>(n) + 100);
        std::vector<float> want(n + 1, 3.0f), got(n + 1, 3.0f);
        std::vector<uint8_t> mw(n + 1, 7), mg(n + 1, 7);
        ref.f32_fake_quantize(n, x.data(), want.data(), mw.data(), p);
        v.table->f32_fake_quantize(n, x.data(), got.data(), mg.data(), p);
        for (int64_t i = 0; i <= n; ++i) {
          ASSERT_TRUE(testing::same_bits(want[i], got[i]))
              << v.name << " n=" << n << " i=" << i << " x=" << (i < n ? x[i] : 0.0f);
        }
        ASSERT_EQ(mw, mg) << v.name << " n=" << n;
        // The mask is optional.
        std::vector<float> nomask(n);
        v.table->f32_fake_quantize(n, x.data(), nomask.data(), nullptr, p);
        for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(testing::same_bits(want[i], nomask[i]));
      }
    }
  }
}

TEST(QuantizeDispatch, ForcedScalarUsesReference) {
  kernels::set_max_isa(Isa::kScalar);
  EXPECT_EQ(kernels::active_isa(), Isa::kScalar);
  EXPECT_EQ(&kernels::quantize_kernels(), &kernels::quantize_kernels_scalar());
  kernels::reset_max_isa();
  EXPECT_EQ(kernels::quantize_kernels_for(kernels::detected_isa()).isa,
            kernels::detected_isa() >= Isa::kAVX512 ? Isa::kAVX512
            : kernels::detected_isa() >= Isa::kAVX2 ? Isa::kAVX2
                                                    : Isa::kScalar);
}

}  // namespace
}  // namespace tqx
