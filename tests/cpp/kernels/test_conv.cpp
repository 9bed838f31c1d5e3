// int8 convolution and add reference kernels against independent integer/double arithmetic.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/conv.h"
#include "kernels/gemm.h"
#include "kernels/isa.h"

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
    const kernels::ConvShape s{t.n, t.h,      t.w,      t.c,   oh,    ow,    t.oc,  t.k,
                               t.k, t.stride, t.stride, t.pad, t.pad, t.dil, t.dil, t.groups};
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

// ---------------------------------------------------------------------------------------------
// SIMD kernels (packed weights) against the scalar reference: bit-exact on every ISA the CPU has.

using kernels::Isa;

struct SimdCase {
  int64_t n, h, w, c, oc, kh, kw, stride, pad, dil, groups;
};

std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kAVX2, Isa::kAVXVNNI, Isa::kAVX512, Isa::kAVX512VNNI, Isa::kAMX}) {
    if (kernels::isa_supported(isa)) out.push_back(isa);
  }
  return out;
}

struct ConvData {
  kernels::ConvShape s;
  std::vector<uint8_t> x, residual;
  std::vector<int8_t> w;
  std::vector<float> mult, bias;
};

ConvData make_conv(const SimdCase& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
  ConvData d;
  const int64_t oh = kernels::conv_out_size(t.h, t.kh, t.stride, t.pad, t.dil);
  const int64_t ow = kernels::conv_out_size(t.w, t.kw, t.stride, t.pad, t.dil);
  d.s = kernels::ConvShape{t.n,  t.h,      t.w,      t.c,   oh,    ow,    t.oc,  t.kh,
                           t.kw, t.stride, t.stride, t.pad, t.pad, t.dil, t.dil, t.groups};
  d.x.resize(t.n * t.h * t.w * t.c);
  d.w.resize(t.oc * t.kh * t.kw * (t.c / t.groups));
  d.residual.resize(t.n * oh * ow * t.oc);
  for (auto& v : d.x) v = static_cast<uint8_t>(u8(rng));
  for (auto& v : d.residual) v = static_cast<uint8_t>(u8(rng));
  for (size_t i = 0; i < d.w.size(); ++i) {
    // Extremes included: -128 and 127 against 255 are where a saturating dot product would break.
    d.w[i] = static_cast<int8_t>(i % 7 == 0 ? -128 : i % 7 == 1 ? 127 : s8(rng));
  }
  // Multipliers spread the accumulators over the output range, so rounding ties and both clamps occur.
  const double k = static_cast<double>(t.kh * t.kw * (t.c / t.groups));
  std::uniform_real_distribution<float> jitter(0.5f, 2.0f);
  d.mult.resize(t.oc);
  d.bias.resize(t.oc);
  for (int64_t c = 0; c < t.oc; ++c) {
    d.mult[c] = static_cast<float>(1.0 / (40.0 * std::sqrt(k))) * jitter(rng);
    d.bias[c] = static_cast<float>(c % 5) - 2.5f;  // exact halves
  }
  return d;
}

std::vector<uint8_t> run_reference(const ConvData& d, const kernels::ConvEpilogue& e) {
  std::vector<uint8_t> y(d.residual.size(), 3);
  kernels::conv2d_u8s8_nhwc_scalar(d.s, d.x.data(), d.w.data(), e, y.data());
  return y;
}

const std::vector<SimdCase>& simd_cases() {
  static const std::vector<SimdCase> cases = {
      {1, 8, 8, 64, 64, 3, 3, 1, 1, 1, 1},     // resnet body: full 64-column tiles
      {2, 9, 7, 3, 24, 7, 7, 2, 3, 1, 1},      // stem: k = 147 is not a multiple of 4
      {2, 12, 11, 3, 32, 3, 3, 2, 1, 1, 1},    // mobilenet's stem: 9-byte kernel rows, runs of inner windows
      {1, 16, 17, 3, 16, 7, 7, 2, 3, 1, 1},    // resnet's stem, with runs of inner windows (21-byte rows)
      {1, 9, 10, 5, 20, 3, 3, 1, 0, 1, 1},     // 15-byte kernel rows, no padding: runs reach the input's end
      {1, 6, 6, 32, 16, 1, 1, 1, 0, 1, 1},     // 1x1 direct path (no im2col)
      {3, 5, 5, 20, 100, 1, 1, 1, 0, 1, 1},    // 1x1 direct, 7 tiles of columns with a tail
      {1, 5, 5, 13, 7, 1, 1, 1, 0, 1, 1},      // 1x1 with in_c % 4 != 0 (im2col), columns < 16
      {1, 7, 7, 17, 33, 3, 3, 2, 1, 1, 1},     // stride 2, odd channels
      {1, 9, 9, 8, 12, 3, 3, 1, 2, 2, 1},      // dilation
      {2, 6, 6, 16, 32, 3, 3, 1, 1, 1, 4},     // grouped (4 in / 8 out per group)
      {1, 6, 5, 12, 36, 3, 3, 1, 1, 1, 3},     // grouped, 12 columns per group
      {1, 8, 8, 32, 32, 3, 3, 1, 1, 1, 32},    // depthwise
      {1, 9, 9, 21, 21, 3, 3, 2, 1, 1, 21},    // depthwise, stride 2, channel tail
      {2, 7, 7, 72, 72, 5, 5, 1, 2, 1, 72},    // depthwise 5x5 (odd number of taps)
      {1, 4, 4, 5, 5, 1, 1, 1, 0, 1, 5},       // depthwise 1x1 (single tap)
      {1, 9, 8, 20, 20, 7, 7, 1, 3, 1, 20},    // depthwise 7x7: more taps than the row kernel takes
      {1, 6, 6, 4, 4, 3, 3, 1, 3, 1, 4},       // depthwise, padding wider than the kernel
      {1, 9, 10, 24, 24, 3, 3, 1, 2, 2, 24},   // depthwise, dilation 2 (runs of inner windows)
      {1, 11, 12, 40, 40, 5, 5, 2, 2, 1, 40},  // depthwise 5x5, stride 2, channel tail
      {1, 4, 150, 48, 48, 3, 3, 1, 1, 1, 48},  // depthwise, rows of three segments (kDepthwiseSegment)
      {1, 5, 141, 35, 35, 3, 3, 2, 1, 1, 35},  // depthwise, stride 2, two segments, channel tail
      {1, 5, 39, 32, 32, 3, 3, 2, 0, 1, 32},   // depthwise, stride 2, no padding: windows reach x's end
      {13, 1, 1, 40, 70, 1, 1, 1, 0, 1, 1},    // linear: 13 rows
      {1, 1, 1, 2048, 130, 1, 1, 1, 0, 1, 1},  // linear: long k (accumulator range)
      {1, 13, 11, 64, 130, 3, 3, 1, 1, 1, 1},  // rows over several im2col blocks, 3 column tiles
      {1, 10, 10, 128, 48, 1, 1, 1, 0, 1, 1},  // 1x1 direct on every kernel (in_c % 64 == 0), 100 rows
      {1, 3, 7, 192, 40, 1, 1, 1, 0, 1, 1},    // 1x1 direct, 21 rows: AMX reads its last tile via a copy
      // Implicit GEMM (in_c per group a multiple of 4: tiles read the input through pointers).
      {2, 9, 9, 32, 72, 3, 3, 2, 1, 1, 1},   // stride 2, two images, column tail
      {1, 7, 9, 16, 20, 5, 5, 1, 4, 1, 1},   // padding as wide as the kernel: all-padding windows
      {2, 8, 8, 16, 32, 1, 1, 2, 0, 1, 1},   // 1x1 stride 2 (resnet's downsample)
      {1, 7, 7, 512, 80, 3, 3, 1, 1, 1, 1},  // long runs per tap (layer4-like)
      {1, 10, 13, 8, 16, 3, 3, 1, 2, 2, 2},  // grouped with dilation (4 channels per group)
  };
  return cases;
}

TEST(ConvSimd, BitExactWithReferenceOnEveryIsa) {
  const auto isas = simd_isas();
  ASSERT_FALSE(isas.empty()) << "this x86-64 CPU has no AVX2; the SIMD kernels cannot be checked here";
  uint32_t seed = 11;
  for (const SimdCase& t : simd_cases()) {
    const ConvData d = make_conv(t, seed++);
    const kernels::PackedConvWeights p =
        kernels::pack_conv_weights(d.w.data(), t.oc, t.kh, t.kw, t.c / t.groups, t.groups);
    const int64_t m = d.s.batch * d.s.out_h * d.s.out_w;
    // Multipliers so large that values pass 2^31 (most outputs saturate): the kernels must keep
    // the float clamp there rather than clamp the rounded integers (TileEpilogue::int_clamp).
    std::vector<float> huge(d.mult);
    for (float& m : huge) m *= 1e7f;
    for (int variant = 0; variant < 7; ++variant) {
      // Zero points at the extremes and in between; ReLU / ReLU6-like clamps; residual on or off;
      // variant 6: the huge multipliers, with a residual and a ReLU6-like clamp.
      const int32_t xz = variant == 0 ? 0 : variant == 1 ? 255 : 97;
      const int32_t yz = variant == 2 ? 0 : variant == 3 ? 255 : 128;
      kernels::ConvEpilogue e{xz, variant == 6 ? huge.data() : d.mult.data(), d.bias.data(), yz,
                              variant == 4 ? yz : 0, variant >= 5 ? 200 : 255};
      if (variant >= 3) {
        e.residual = d.residual.data();
        e.residual_multiplier = 0.75f;
        e.residual_zero_point = variant == 5 ? 0 : 131;
      }
      const std::vector<uint8_t> ref = run_reference(d, e);
      for (Isa isa : isas) {
        SCOPED_TRACE(::testing::Message()
                     << "isa=" << kernels::isa_name(isa) << " case c=" << t.c << " oc=" << t.oc << " k=" << t.kh << "x"
                     << t.kw << " groups=" << t.groups << " variant=" << variant);
        std::vector<uint8_t> y(ref.size(), 3);
        kernels::conv2d_u8s8_nhwc_packed(d.s, p, d.x.data(), e, y.data(), 0, m, isa);
        ASSERT_EQ(y, ref);
      }
    }
  }
}

// The input ending right before an inaccessible page: kernels that load whole vectors or read
// columns past a window (im2col's 16-byte moves, the depthwise pairs' column quads, whose last
// columns have zero weights) must stay inside x. Every case of simd_cases(), every ISA, with
// 7-bit and 8-bit activations; a read past x is a crash here, not a wrong byte.
TEST(ConvSimd, NoKernelReadsPastTheInput) {
  const auto isas = simd_isas();
  ASSERT_FALSE(isas.empty());
  const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  uint32_t seed = 29;
  for (const SimdCase& t : simd_cases()) {
    const ConvData d = make_conv(t, seed++);
    const kernels::PackedConvWeights p =
        kernels::pack_conv_weights(d.w.data(), t.oc, t.kh, t.kw, t.c / t.groups, t.groups);
    const size_t bytes = (d.x.size() + page - 1) / page * page;
    void* mem = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem, MAP_FAILED);
    ASSERT_EQ(mprotect(static_cast<uint8_t*>(mem) + bytes, page, PROT_NONE), 0);
    uint8_t* const x = static_cast<uint8_t*>(mem) + bytes - d.x.size();
    for (int bits : {8, 7}) {
      ConvData v = d;
      for (auto& b : v.x) b = bits == 7 ? static_cast<uint8_t>(b & 127) : b;
      std::memcpy(x, v.x.data(), v.x.size());
      const kernels::ConvEpilogue e{bits == 7 ? 64 : 97, v.mult.data(), v.bias.data(), 128, 0, 255};
      const std::vector<uint8_t> ref = run_reference(v, e);
      for (Isa isa : isas) {
        std::vector<uint8_t> y(ref.size(), 3);
        kernels::conv2d_u8s8_nhwc_packed(v.s, p, x, e, y.data(), 0, v.s.batch * v.s.out_h * v.s.out_w, isa);
        ASSERT_EQ(y, ref) << kernels::isa_name(isa) << " c=" << t.c << " oc=" << t.oc << " k=" << t.kh << "x" << t.kw
                          << " groups=" << t.groups << " bits=" << bits;
      }
    }
    munmap(mem, bytes + page);
  }
}

// 7-bit activations (the x86 preset's) take the AVX2 vpmaddubsw tiles and depthwise kernel; the
// extremes 127 x -128 and 127 x 127 are where those pair sums come closest to int16's range. One
// byte of 128 must send the rows that read it back to the exact int16 kernels (GEMM: their row
// blocks; depthwise: the output rows whose windows hold it, the others staying 7-bit), and an input
// zero point of 128 or a residual (the 7-bit depthwise kernel has none) the whole call.
TEST(ConvSimd, SevenBitActivationsAreBitExactWithReference) {
  uint32_t seed = 101;
  for (const SimdCase& t : simd_cases()) {
    ConvData d = make_conv(t, seed++);
    for (size_t i = 0; i < d.x.size(); ++i) d.x[i] = i % 5 == 0 ? 127 : static_cast<uint8_t>(d.x[i] & 0x7F);
    const kernels::PackedConvWeights p =
        kernels::pack_conv_weights(d.w.data(), t.oc, t.kh, t.kw, t.c / t.groups, t.groups);
    const int64_t m = d.s.batch * d.s.out_h * d.s.out_w;
    for (int variant = 0; variant < 5; ++variant) {
      ConvData v = d;
      if (variant == 3) v.x[v.x.size() / 2] = 128;
      const int32_t xz = variant == 0 ? 0 : variant == 1 || variant == 4 ? 127 : variant == 2 ? 128 : 64;
      // Variant 4: a ReLU clamp (qmin = the zero point), so the lower clamp is not left to the packs.
      kernels::ConvEpilogue e{xz, v.mult.data(), v.bias.data(), 128, variant == 4 ? 128 : 0, 255};
      if (variant == 1) {
        e.residual = v.residual.data();
        e.residual_multiplier = 0.5f;
        e.residual_zero_point = 7;
      }
      const std::vector<uint8_t> ref = run_reference(v, e);
      for (Isa isa : simd_isas()) {
        std::vector<uint8_t> y(ref.size(), 3);
        kernels::conv2d_u8s8_nhwc_packed(v.s, p, v.x.data(), e, y.data(), 0, m, isa);
        ASSERT_EQ(y, ref) << kernels::isa_name(isa) << " c=" << t.c << " oc=" << t.oc << " k=" << t.kh << "x" << t.kw
                          << " groups=" << t.groups << " variant=" << variant;
      }
    }
  }
}

TEST(ConvSimd, AnySplitOfThePixelsGivesTheSameBytes) {
  // A dense convolution and depthwise ones (whose kernels walk runs of inner windows per row); with
  // 7-bit inputs they take the AVX2 vpmaddubsw kernels, which check the input rows of each part.
  struct SplitCase {
    SimdCase t;
    bool seven;
  };
  for (const auto& [t, seven] :
       {SplitCase{{2, 11, 9, 24, 40, 3, 3, 1, 1, 1, 1}, false}, SplitCase{{2, 11, 9, 24, 40, 3, 3, 1, 1, 1, 1}, true},
        SplitCase{{2, 11, 9, 24, 24, 3, 3, 1, 1, 1, 24}, false},
        SplitCase{{2, 11, 9, 24, 24, 3, 3, 1, 1, 1, 24}, true}, SplitCase{{2, 10, 9, 40, 40, 5, 5, 2, 2, 1, 40}, true},
        SplitCase{{1, 9, 9, 48, 48, 3, 3, 2, 1, 1, 48}, true}}) {
    ConvData d = make_conv(t, 3);
    if (seven) {
      for (auto& b : d.x) b &= 0x7F;
    }
    const auto p = kernels::pack_conv_weights(d.w.data(), t.oc, t.kh, t.kw, t.c / t.groups, t.groups);
    const kernels::ConvEpilogue e{77, d.mult.data(), d.bias.data(), 128, 0, 255};
    const std::vector<uint8_t> ref = run_reference(d, e);
    const int64_t m = d.s.batch * d.s.out_h * d.s.out_w;
    for (Isa isa : simd_isas()) {
      for (int64_t parts : {2, 3, 7, 61}) {
        std::vector<uint8_t> y(ref.size(), 3);
        for (int64_t i = 0; i < parts; ++i) {
          kernels::conv2d_u8s8_nhwc_packed(d.s, p, d.x.data(), e, y.data(), m * i / parts, m * (i + 1) / parts, isa);
        }
        ASSERT_EQ(y, ref) << kernels::isa_name(isa) << " groups=" << t.groups << " parts=" << parts
                          << " seven_bit=" << seven;
      }
    }
  }
}

TEST(ConvSimd, NanMultiplierMapsToTheLowerClampLikeTheReference) {
  const SimdCase t{1, 4, 4, 8, 16, 1, 1, 1, 0, 1, 1};
  ConvData d = make_conv(t, 9);
  d.mult[3] = std::numeric_limits<float>::quiet_NaN();
  d.mult[5] = std::numeric_limits<float>::infinity();
  const auto p = kernels::pack_conv_weights(d.w.data(), t.oc, 1, 1, t.c, 1);
  const kernels::ConvEpilogue e{10, d.mult.data(), d.bias.data(), 128, 0, 255};
  const std::vector<uint8_t> ref = run_reference(d, e);
  EXPECT_EQ(ref[3], 0);  // NaN -> qmin, as Note [Rounding] says
  for (Isa isa : simd_isas()) {
    std::vector<uint8_t> y(ref.size(), 3);
    kernels::conv2d_u8s8_nhwc_packed(d.s, p, d.x.data(), e, y.data(), 0, 16, isa);
    EXPECT_EQ(y, ref) << kernels::isa_name(isa);
  }
}

TEST(ConvSimd, PackingKeepsColumnSumsAndPadsWithZeros) {
  const std::vector<int8_t> w = {1, -2, 3, 4, 5, -128, 127, 0, 9, 10};  // 2 channels x k = 5
  const auto p = kernels::pack_conv_weights(w.data(), 2, 1, 1, 5, 1);
  EXPECT_FALSE(p.depthwise);
  EXPECT_EQ(p.k_padded, 8);
  EXPECT_EQ(p.n_blocks, 1);
  EXPECT_EQ(p.col_sums, (std::vector<int32_t>{11, 18}));
  const auto* b = reinterpret_cast<const int8_t*>(p.packed.data());
  // k-group 0, column 1 holds channel 1's first four weights; k-group 1 its fifth and zeros.
  EXPECT_EQ(std::vector<int8_t>(b + 4, b + 8), (std::vector<int8_t>{-128, 127, 0, 9}));
  EXPECT_EQ(std::vector<int8_t>(b + 64 + 4, b + 64 + 8), (std::vector<int8_t>{10, 0, 0, 0}));
  EXPECT_EQ(b[64 + 8], 0);  // column 2 does not exist: zero
  // The int16 k-pairs of the AVX2 tiles: pair j, column c at (j * 16 + c) * 2.
  const int16_t* pairs = p.int16_blocks();
  EXPECT_EQ(pairs, p.int16_blocks());  // made once
  EXPECT_EQ(std::vector<int16_t>(pairs + 2, pairs + 4), (std::vector<int16_t>{-128, 127}));
  EXPECT_EQ(std::vector<int16_t>(pairs + 32 + 2, pairs + 32 + 4), (std::vector<int16_t>{0, 9}));
  EXPECT_EQ(std::vector<int16_t>(pairs + 64 + 2, pairs + 64 + 4), (std::vector<int16_t>{10, 0}));
  EXPECT_EQ(pairs[4], 0);  // column 2 does not exist: zero
}

// conv2d_pair (Note [Conv pairs]): a pointwise convolution and the one after it in bands of rows,
// against the scalar reference of the two in turn, bit for bit, on every ISA: tiny bands (one output
// row, rows moved to the buffer's start on every band), middling and whole-image ones, and the output
// rows split over "threads" at arbitrary points (each part starts its buffer afresh).
TEST(ConvPair, BitExactWithTheTwoConvolutionsInTurnOnEveryIsa) {
  struct PairCase {
    int64_t n, h, w, c, mid, oc, k, stride, pad, dil, groups;
  };
  const std::vector<PairCase> cases = {
      {1, 13, 11, 16, 48, 48, 3, 1, 1, 1, 48},   // mobilenet_v2: expand, depthwise 3x3
      {2, 12, 9, 24, 40, 40, 3, 2, 1, 1, 40},    // depthwise stride 2, two images, channel tail
      {1, 11, 10, 8, 32, 32, 5, 2, 2, 1, 32},    // depthwise 5x5, stride 2
      {1, 9, 12, 16, 24, 24, 3, 1, 2, 2, 24},    // dilation 2
      {1, 5, 6, 12, 20, 20, 3, 1, 3, 1, 20},     // padding wider than the kernel: rows of only padding
      {2, 10, 7, 20, 36, 52, 3, 1, 1, 1, 1},     // a dense second convolution (implicit GEMM)
      {1, 9, 9, 3, 8, 16, 3, 2, 0, 1, 1},        // dense, no padding, 3 input channels (im2col)
      {1, 1, 7, 16, 32, 32, 3, 1, 1, 1, 32},     // one row
  };
  uint32_t seed = 71;
  for (const PairCase& t : cases) {
    const ConvData d1 = make_conv({t.n, t.h, t.w, t.c, t.mid, 1, 1, 1, 0, 1, 1}, seed++);
    const ConvData d2 = make_conv({t.n, t.h, t.w, t.mid, t.oc, t.k, t.k, t.stride, t.pad, t.dil, t.groups}, seed++);
    const auto p1 = kernels::pack_conv_weights(d1.w.data(), t.mid, 1, 1, t.c, 1);
    const auto p2 = kernels::pack_conv_weights(d2.w.data(), t.oc, t.k, t.k, t.mid / t.groups, t.groups);
    for (int variant = 0; variant < 3; ++variant) {
      // 0: plain; 1: ReLU on the first, a residual on the second; 2: 7-bit activations throughout
      // (the x86 preset's; AVX2 then takes its vpmaddubsw kernels for both steps).
      const bool seven = variant == 2;
      ConvData v1 = d1;
      if (seven) {
        for (auto& b : v1.x) b &= 0x7F;
      }
      const int32_t mid_zp = seven ? 60 : 128;
      kernels::ConvEpilogue e1{seven ? 64 : 97, v1.mult.data(), v1.bias.data(), mid_zp, variant == 1 ? mid_zp : 0,
                               seven ? 127 : 255};
      kernels::ConvEpilogue e2{mid_zp, d2.mult.data(), d2.bias.data(), 100, 0, 255};
      if (variant == 1) {
        e2.residual = d2.residual.data();
        e2.residual_multiplier = 0.5f;
        e2.residual_zero_point = 9;
      }
      // The reference: the scalar kernel on the whole first output, then on the second.
      ConvData between = d2;
      between.x = run_reference(v1, e1);
      const std::vector<uint8_t> ref = run_reference(between, e2);
      const int64_t rows = d2.s.batch * d2.s.out_h;
      for (Isa isa : simd_isas()) {
        for (int64_t band_bytes : {int64_t{1}, 3 * t.w * t.mid, kernels::kConvPairBandBytes}) {
          for (int64_t parts : {1, 2, 5}) {
            SCOPED_TRACE(::testing::Message() << "isa=" << kernels::isa_name(isa) << " c=" << t.c << " mid=" << t.mid
                                              << " k=" << t.k << " stride=" << t.stride << " groups=" << t.groups
                                              << " variant=" << variant << " band_bytes=" << band_bytes
                                              << " parts=" << parts);
            std::vector<uint8_t> y(ref.size(), 3);
            for (int64_t i = 0; i < parts; ++i) {
              const kernels::ConvStep first{v1.s, p1, e1};
              const kernels::ConvStep second{d2.s, p2, e2};
              ASSERT_TRUE(kernels::conv2d_pair_u8s8_nhwc_packed(first, second, v1.x.data(), y.data(), rows * i / parts,
                                                                rows * (i + 1) / parts, isa, band_bytes));
            }
            ASSERT_EQ(y, ref);
          }
        }
      }
    }
  }
}

TEST(ConvPair, DeclinesAFirstConvolutionThatIsNotPointwise) {
  const ConvData d1 = make_conv({1, 6, 6, 8, 16, 3, 3, 1, 1, 1, 1}, 5);
  const ConvData d2 = make_conv({1, 6, 6, 16, 16, 3, 3, 1, 1, 1, 16}, 6);
  const auto p1 = kernels::pack_conv_weights(d1.w.data(), 16, 3, 3, 8, 1);
  const auto p2 = kernels::pack_conv_weights(d2.w.data(), 16, 3, 3, 1, 16);
  const kernels::ConvEpilogue e{1, d1.mult.data(), d1.bias.data(), 128, 0, 255};
  std::vector<uint8_t> y(d2.residual.size(), 3);
  const std::vector<uint8_t> untouched = y;
  EXPECT_FALSE(kernels::conv2d_pair_u8s8_nhwc_packed({d1.s, p1, e}, {d2.s, p2, e}, d1.x.data(), y.data(), 0, 6,
                                                     kernels::active_isa()));
  ConvData mismatched = d2;  // a pointwise first step whose output is not the second's input
  const ConvData pw = make_conv({1, 6, 6, 8, 12, 1, 1, 1, 0, 1, 1}, 7);
  const auto ppw = kernels::pack_conv_weights(pw.w.data(), 12, 1, 1, 8, 1);
  EXPECT_FALSE(kernels::conv2d_pair_u8s8_nhwc_packed({pw.s, ppw, e}, {mismatched.s, p2, e}, pw.x.data(), y.data(), 0,
                                                     6, kernels::active_isa()));
  EXPECT_EQ(y, untouched);
}

// GemmKernels::tiles (one call per column group, the kernel splitting the rows into tiles) against
// GemmKernels::tile one row at a time: every row count of an im2col block, full and partial column
// groups, with and without a residual and a prefetch range, both clamp paths. Bytes outside the
// rows and columns asked for stay as they were.
TEST(GemmTiles, OneCallGivesTheBytesOfOneRowAtATime) {
  std::vector<const kernels::GemmKernels*> sets;
  if (kernels::isa_supported(Isa::kAVX2) && kernels::gemm_kernels_avx2() != nullptr)
    sets.push_back(kernels::gemm_kernels_avx2());
  if (kernels::isa_supported(Isa::kAVXVNNI) && kernels::gemm_kernels_avx_vnni() != nullptr)
    sets.push_back(kernels::gemm_kernels_avx_vnni());
  if (kernels::isa_supported(Isa::kAVX512VNNI) && kernels::gemm_kernels_avx512_vnni() != nullptr)
    sets.push_back(kernels::gemm_kernels_avx512_vnni());
  int tested = 0;
  for (const kernels::GemmKernels* k : sets) {
    if (k->tiles == nullptr || k->b_int16 || k->widen_a != nullptr) continue;
    ++tested;
    const ConvData d = make_conv({1, 10, 10, 40, 64, 1, 1, 1, 0, 1, 1}, 23);  // A: 100 rows of k = 40
    const auto p = kernels::pack_conv_weights(d.w.data(), 64, 1, 1, 40, 1);
    const int64_t k_padded = (40 + k->k_align - 1) / k->k_align * k->k_align, ldy = 80;
    std::vector<uint8_t> a(100 * k_padded, 0);
    for (int64_t r = 0; r < 100; ++r) std::memcpy(&a[r * k_padded], &d.x[r * 40], 40);
    std::vector<uint8_t> residual(100 * ldy);
    for (size_t i = 0; i < residual.size(); ++i) residual[i] = static_cast<uint8_t>(i * 37 % 251);
    const auto* b = reinterpret_cast<const int8_t*>(p.packed.data());
    for (int variant = 0; variant < 4; ++variant) {
      kernels::TileEpilogue e{p.col_sums.data(), d.mult.data(), d.bias.data(), 97, 128, -128.0f, 127.0f,
                              nullptr, 0.75f, 131};
      if (variant == 1) e.lo = -100.0f;  // not the packs' clamp: the general store path
      if (variant >= 2) e.residual = residual.data();
      if (variant == 3) {
        e.prefetch = b;
        e.prefetch_end = b + p.k_alloc * 16 * p.n_blocks;
      }
      for (int64_t cols : {64, 48, 24, 7}) {
        for (int64_t rows = 1; rows <= 96; ++rows) {
          SCOPED_TRACE(::testing::Message() << "variant=" << variant << " cols=" << cols << " rows=" << rows);
          std::vector<uint8_t> want((rows + 2) * ldy, 0xA5), got = want;
          kernels::TileEpilogue one = e;
          one.prefetch = one.prefetch_end = nullptr;
          for (int64_t r = 0; r < rows; ++r) {
            if (e.residual != nullptr) one.residual = e.residual + r * ldy;
            k->tile(1, cols, k_padded, &a[r * k_padded], k_padded, b, p.k_alloc * 16, one, &want[r * ldy], ldy);
          }
          k->tiles(rows, cols, k_padded, a.data(), k_padded, b, p.k_alloc * 16, e, got.data(), ldy);
          ASSERT_EQ(got, want);
        }
      }
    }
  }
  if (tested == 0) GTEST_SKIP() << "no kernel set on this CPU has GemmKernels::tiles";
}

}  // namespace
}  // namespace tqx
