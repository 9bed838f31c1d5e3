// Weight quantization (weights.cpp) under every WeightSpec: integer ranges, qparams against
// torch.ao's conventions, 8-bit bit-exact with PyTorch's quantizer, and the qconfig overrides.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "passes/qconfig.h"
#include "passes/weights.h"
#include "test_util.h"

namespace tqx {
namespace {

using passes::QuantizedWeight;
using passes::WeightSpec;
using testing::error_of;

at::Tensor sample_weight() {
  at::manual_seed(3);
  at::Tensor w = at::randn({6, 4, 3, 3});
  w[2].mul_(10);  // one channel much wider than the rest
  return w;
}

TEST(WeightSpec, IntegerRangesAndQParams) {
  const at::Tensor w = sample_weight();
  for (int64_t bits : {4, 8, 16}) {
    for (bool per_channel : {true, false}) {
      for (bool symmetric : {true, false}) {
        const WeightSpec spec{bits, per_channel, symmetric};
        SCOPED_TRACE(spec.describe());
        const QuantizedWeight q = passes::quantize_weight(w, spec);
        EXPECT_EQ(q.scale.numel(), per_channel ? 6 : 1);
        EXPECT_GE(q.values.min().item<int64_t>(), spec.qmin());
        EXPECT_LE(q.values.max().item<int64_t>(), spec.qmax());
        // The range is used: some value reaches an end (within one step of the extreme).
        const int64_t reach = std::max(-q.values.min().item<int64_t>(), q.values.max().item<int64_t>());
        EXPECT_GE(reach, spec.qmax() - 1);
        if (symmetric) EXPECT_EQ(q.zero_point.abs().max().item<int64_t>(), 0);
        // torch.ao's symmetric scale: max|w| / ((qmax - qmin) / 2), per channel.
        if (symmetric && per_channel) {
          const at::Tensor expect = w.abs().flatten(1).amax(1).div((spec.qmax() - spec.qmin()) / 2.0);
          EXPECT_TRUE(at::allclose(q.scale.to(at::kFloat), expect, 1e-6, 0));
        }
        // Rounding error at most half a step inside the range.
        const at::Tensor s = per_channel ? q.scale.to(at::kFloat).reshape({6, 1, 1, 1}) : q.scale.to(at::kFloat);
        const at::Tensor err = (q.dequantize() - w).abs() / s;
        EXPECT_LE(err.max().item<float>(), 0.5f + 1e-3f + (symmetric ? 0.5f : 0.f));  // symmetric clips +max by 1/2
      }
    }
  }
}

TEST(WeightSpec, EightBitMatchesPyTorchQuantizer) {
  const at::Tensor w = sample_weight();
  const at::Tensor pc = passes::quantize_weight_int8(w, /*per_channel=*/true);
  const at::Tensor ref = at::quantize_per_channel(w, pc.q_per_channel_scales(), pc.q_per_channel_zero_points(), 0,
                                                  at::kQInt8);
  EXPECT_TRUE(at::equal(pc.int_repr(), ref.int_repr()));
  const at::Tensor pt = passes::quantize_weight_int8(w, /*per_channel=*/false);
  EXPECT_TRUE(at::equal(pt.int_repr(), at::quantize_per_tensor(w, pt.q_scale(), 0, at::kQInt8).int_repr()));
  EXPECT_TRUE(at::equal(pt.dequantize(), passes::quantize_weight(w, {8, false, true}).dequantize()));
}

TEST(WeightSpec, FourBitIsQInt8InMinus8To7) {
  const QuantizedWeight q = passes::quantize_weight(sample_weight(), {4, true, true});
  const at::Tensor t = q.to_qint8();
  EXPECT_EQ(t.scalar_type(), at::kQInt8);
  EXPECT_EQ(t.qscheme(), at::kPerChannelAffine);
  EXPECT_GE(t.int_repr().min().item<int>(), -8);
  EXPECT_LE(t.int_repr().max().item<int>(), 7);
  EXPECT_TRUE(at::equal(t.dequantize(), q.dequantize()));
  EXPECT_NE(error_of([&] { passes::quantize_weight(sample_weight(), {16, true, true}).to_qint8(); }).find("16-bit"),
            std::string::npos);
}

TEST(WeightSpec, QConfigOverridesRoundTrip) {
  const auto q = passes::QConfig::preset_named("x86;weight_bits=4;weight_symmetric=0;weight_per_channel=0");
  EXPECT_EQ(q.weight_bits, 4);
  EXPECT_FALSE(q.weight_symmetric);
  EXPECT_FALSE(q.weight_per_channel);
  const auto back = passes::QConfig::deserialize(q.serialize());
  EXPECT_EQ(back.weight_spec().bits, 4);
  EXPECT_FALSE(back.weight_spec().symmetric);
  EXPECT_FALSE(back.weight_spec().per_channel);
  // Texts written before these options read back as 8-bit symmetric.
  EXPECT_EQ(passes::QConfig::deserialize("preset=x86;weight_per_channel=1").weight_bits, 8);
  EXPECT_NE(error_of([] { passes::QConfig::preset_named("x86;weight_bits=2"); }).find("weight_bits should be 4, 8 or 16, got '2'"),
            std::string::npos);
  EXPECT_NE(error_of([] { passes::QConfig::preset_named("x86;weight_symmetric=maybe"); }).find("'maybe'"),
            std::string::npos);
}

}  // namespace
}  // namespace tqx
