// Pooling kernels: the drivers on the scalar table against a naive reference written here, and
// every SIMD table the CPU has against the scalar one bit for bit; cat / upsample copies.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/copy.h"
#include "kernels/lut.h"
#include "kernels/pool.h"
#include "test_util.h"

namespace tqx {
namespace {

using kernels::Isa;
using kernels::Pool2dShape;

std::vector<uint8_t> bytes(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, 255);
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = i % 11 == 0 ? 255 : i % 7 == 0 ? 0 : static_cast<uint8_t>(d(rng));
  return v;
}

std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  if (kernels::isa_supported(Isa::kAVX2) && kernels::pool_kernels_avx2()) out.push_back(Isa::kAVX2);
  if (kernels::isa_supported(Isa::kAVX512) && kernels::pool_kernels_avx512()) out.push_back(Isa::kAVX512);
  return out;
}

// Window primitives on every SIMD table against the scalar one: channel counts around each vector
// width, 0 to 10 taps (0: max gives 0, the average only the bias), one window or a run of three
// (step: two pixels and 3 bytes), and requantize parameters with ties, saturation at both ends and
// a NaN multiplier.
TEST(PoolSimd, PrimitivesEqualReference) {
  const auto& ref = kernels::pool_kernels_scalar();
  const std::vector<kernels::AffineParams> rq = {
      kernels::make_requant_params(0.25f, 128, 0, 255), kernels::make_requant_params(1.0f / 9.0f, 3, 0, 255),
      kernels::make_requant_params(4.0f, 0, 0, 255), kernels::make_requant_params(0.5f, 255, 0, 255),
      kernels::make_requant_params(std::nanf(""), 7, 0, 255)};
  const std::vector<int32_t> biases = {0, -128 * 4, -255 * 10, 1000};
  for (Isa isa : simd_isas()) {
    const auto& k = kernels::pool_kernels_for(isa);
    for (int64_t n : testing::edge_sizes()) {
      for (int64_t count : {1, 3}) {
        const int64_t step = 2 * n + 3;
        for (int64_t taps : {0, 1, 2, 4, 9, 10}) {
          std::vector<std::vector<uint8_t>> xs;
          std::vector<const uint8_t*> rows;
          for (int64_t t = 0; t < taps; ++t) xs.push_back(bytes((count - 1) * step + n, 10 + static_cast<uint32_t>(t)));
          for (const auto& v : xs) rows.push_back(v.data());
          std::vector<uint8_t> want(count * n + 1, 77), got(count * n + 1, 77);
          ref.u8_max_windows(n, taps, rows.data(), count, step, want.data());
          k.u8_max_windows(n, taps, rows.data(), count, step, got.data());
          ASSERT_EQ(got, want) << kernels::isa_name(isa) << " max n=" << n << " taps=" << taps << " count=" << count;
          for (const auto& p : rq) {
            for (int32_t bias : biases) {
              ref.u8_avg_windows(n, taps, rows.data(), count, step, bias, p, want.data());
              k.u8_avg_windows(n, taps, rows.data(), count, step, bias, p, got.data());
              ASSERT_EQ(got, want) << kernels::isa_name(isa) << " avg n=" << n << " taps=" << taps << " count=" << count
                                   << " bias=" << bias << " mult=" << p.inv_scale;
              ASSERT_EQ(got[count * n], 77) << "wrote past the end";
            }
          }
        }
      }
    }
  }
}

// Channel counts below, at and above each vector width.
const std::vector<int64_t> kChannels = {1, 3, 8, 16, 17, 31, 32, 33, 64, 65, 130};

TEST(Pool, MaxPoolMatchesNaiveAndEveryIsa) {
  for (int64_t c : kChannels) {
    // 3x3 stride 2 pad 1 dilation 1, and 2x3 stride 1 pad 0 dilation 2.
    for (const Pool2dShape& base : {Pool2dShape{2, 7, 6, 0, 4, 3, 3, 3, 2, 2, 1, 1, 1, 1},
                                    Pool2dShape{1, 6, 7, 0, 4, 3, 2, 3, 1, 1, 0, 0, 2, 2}}) {
      Pool2dShape s = base;
      s.channels = c;
      const auto x = bytes(s.batch * s.in_h * s.in_w * c, 5);
      const int64_t pixels = s.batch * s.out_h * s.out_w;
      std::vector<uint8_t> want(pixels * c, 0);
      for (int64_t m = 0; m < pixels; ++m) {
        const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
        for (int64_t ch = 0; ch < c; ++ch) {
          int v = 0;
          for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
            for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
              const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
              const int64_t iw = ow * s.stride_w - s.pad_w + kw * s.dilation_w;
              if (ih >= 0 && ih < s.in_h && iw >= 0 && iw < s.in_w) {
                v = std::max<int>(v, x[((n * s.in_h + ih) * s.in_w + iw) * c + ch]);
              }
            }
          }
          want[m * c + ch] = static_cast<uint8_t>(v);
        }
      }
      std::vector<Isa> isas = simd_isas();
      isas.push_back(Isa::kScalar);
      for (Isa isa : isas) {
        // Any split of the pixels (here inside output rows, which cuts runs of windows) gives the same bytes.
        for (int64_t split : {int64_t{0}, int64_t{1}, pixels / 2 + 1}) {
          std::vector<uint8_t> got(pixels * c, 7);
          kernels::max_pool2d_u8_nhwc(s, x.data(), got.data(), 0, split, isa);
          kernels::max_pool2d_u8_nhwc(s, x.data(), got.data(), split, pixels, isa);
          ASSERT_EQ(got, want) << kernels::isa_name(isa) << " c=" << c << " split=" << split;
        }
      }
    }
  }
}

// Note [Average pooling] evaluated directly, in float32 and nearbyint.
uint8_t avg_ref(int64_t sum, int64_t taps, int64_t divisor, const kernels::AvgPoolParams& p) {
  const int32_t acc = static_cast<int32_t>(sum - int64_t{p.in_zero_point} * taps);
  const float mult = p.in_scale / p.out_scale / static_cast<float>(divisor);
  const float v = std::nearbyint(static_cast<float>(acc) * mult) + static_cast<float>(p.out_zero_point);
  return static_cast<uint8_t>(std::fmin(std::fmax(v, 0.0f), 255.0f));
}

TEST(Pool, AvgPoolMatchesNaiveAndEveryIsa) {
  const std::vector<kernels::AvgPoolParams> params = {{0.05f, 0.05f, 128, 128, true, 0},
                                                      {0.05f, 0.05f, 0, 0, false, 0},
                                                      {0.02f, 0.01f, 255, 255, true, 0},
                                                      {0.05f, 0.07f, 3, 250, false, 5}};
  for (int64_t c : kChannels) {
    for (const auto& p : params) {
      Pool2dShape s{2, 7, 6, c, 4, 3, 3, 3, 2, 2, 1, 1, 1, 1};
      const auto x = bytes(s.batch * s.in_h * s.in_w * c, 9);
      const int64_t pixels = s.batch * s.out_h * s.out_w;
      std::vector<uint8_t> want(pixels * c);
      for (int64_t m = 0; m < pixels; ++m) {
        const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
        int64_t h0 = oh * 2 - 1, w0 = ow * 2 - 1;
        int64_t h1 = std::min<int64_t>(h0 + 3, s.in_h + 1), w1 = std::min<int64_t>(w0 + 3, s.in_w + 1);
        const int64_t padded = (h1 - h0) * (w1 - w0);
        h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
        h1 = std::min(h1, s.in_h), w1 = std::min(w1, s.in_w);
        const int64_t taps = (h1 - h0) * (w1 - w0);
        for (int64_t ch = 0; ch < c; ++ch) {
          int64_t sum = 0;
          for (int64_t ih = h0; ih < h1; ++ih) {
            for (int64_t iw = w0; iw < w1; ++iw) sum += x[((n * s.in_h + ih) * s.in_w + iw) * c + ch];
          }
          const int64_t div = p.divisor_override ? p.divisor_override : p.count_include_pad ? padded : taps;
          want[m * c + ch] = avg_ref(sum, taps, div, p);
        }
      }
      std::vector<Isa> isas = simd_isas();
      isas.push_back(Isa::kScalar);
      for (Isa isa : isas) {
        for (int64_t split : {int64_t{0}, int64_t{1}, pixels / 2 + 1}) {
          std::vector<uint8_t> got(pixels * c, 7);
          kernels::avg_pool2d_u8_nhwc(s, p, x.data(), got.data(), 0, split, isa);
          kernels::avg_pool2d_u8_nhwc(s, p, x.data(), got.data(), split, pixels, isa);
          ASSERT_EQ(got, want) << kernels::isa_name(isa) << " c=" << c << " zp=" << p.in_zero_point
                               << " split=" << split;
        }
      }
    }
  }
}

TEST(Pool, AdaptiveAvgPoolMatchesNaiveAndEveryIsa) {
  const kernels::AvgPoolParams p{0.05f, 0.05f, 100, 100, true, 0};
  for (int64_t c : kChannels) {
    for (auto [oh_n, ow_n] : {std::pair<int64_t, int64_t>{1, 1}, {3, 2}, {7, 6}}) {
      Pool2dShape s{2, 7, 6, c, oh_n, ow_n, 0, 0, 0, 0, 0, 0, 0, 0};
      const auto x = bytes(s.batch * s.in_h * s.in_w * c, 11);
      const int64_t pixels = s.batch * s.out_h * s.out_w;
      std::vector<uint8_t> want(pixels * c);
      for (int64_t m = 0; m < pixels; ++m) {
        const int64_t n = m / (s.out_h * s.out_w), oh = m / s.out_w % s.out_h, ow = m % s.out_w;
        const int64_t h0 = static_cast<int64_t>(std::floor(float(oh * s.in_h) / s.out_h));
        const int64_t h1 = static_cast<int64_t>(std::ceil(float((oh + 1) * s.in_h) / s.out_h));
        const int64_t w0 = static_cast<int64_t>(std::floor(float(ow * s.in_w) / s.out_w));
        const int64_t w1 = static_cast<int64_t>(std::ceil(float((ow + 1) * s.in_w) / s.out_w));
        for (int64_t ch = 0; ch < c; ++ch) {
          int64_t sum = 0;
          for (int64_t ih = h0; ih < h1; ++ih) {
            for (int64_t iw = w0; iw < w1; ++iw) sum += x[((n * s.in_h + ih) * s.in_w + iw) * c + ch];
          }
          want[m * c + ch] = avg_ref(sum, (h1 - h0) * (w1 - w0), (h1 - h0) * (w1 - w0), p);
        }
      }
      std::vector<Isa> isas = simd_isas();
      isas.push_back(Isa::kScalar);
      for (Isa isa : isas) {
        std::vector<uint8_t> got(pixels * c, 7);
        // Split in two ranges: the result must not depend on how pixels are split over threads.
        kernels::adaptive_avg_pool2d_u8_nhwc(s, p, x.data(), got.data(), 0, pixels / 2, isa);
        kernels::adaptive_avg_pool2d_u8_nhwc(s, p, x.data(), got.data(), pixels / 2, pixels, isa);
        ASSERT_EQ(got, want) << kernels::isa_name(isa) << " c=" << c << " out=" << oh_n << "x" << ow_n;
      }
    }
  }
}

TEST(Copy, CatCopiesOrMapsEachInput) {
  const int64_t outer = 5;
  const std::vector<int64_t> inner = {3, 17, 64};
  std::vector<std::vector<uint8_t>> xs;
  for (size_t i = 0; i < inner.size(); ++i) xs.push_back(bytes(outer * inner[i], 20 + i));
  uint8_t table[256];
  kernels::build_u8_lut(kernels::LutFunction::kRequantize, 0.1f, 128, 0.2f, 100, table);
  const uint8_t* ptrs[3] = {xs[0].data(), xs[1].data(), xs[2].data()};
  const uint8_t* tables[3] = {nullptr, table, nullptr};
  std::vector<uint8_t> y(outer * 84);
  kernels::u8_cat_rows(3, ptrs, inner.data(), tables, y.data(), 0, outer, Isa::kScalar);
  for (int64_t r = 0; r < outer; ++r) {
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(y[r * 84 + j], xs[0][r * 3 + j]);
    for (int64_t j = 0; j < 17; ++j) EXPECT_EQ(y[r * 84 + 3 + j], table[xs[1][r * 17 + j]]);
    for (int64_t j = 0; j < 64; ++j) EXPECT_EQ(y[r * 84 + 20 + j], xs[2][r * 64 + j]);
  }
}

TEST(Copy, UpsampleNearestCopiesSourcePixels) {
  const int64_t c = 5, ih = 2, iw = 3, oh = 5, ow = 7, batch = 2;
  const auto x = bytes(batch * ih * iw * c, 30);
  const std::vector<int64_t> sh = {0, 0, 1, 1, 1}, sw = {0, 0, 0, 1, 1, 2, 2};
  const int64_t pixels = batch * oh * ow;
  // Any split of the pixels gives the same bytes (repeated rows are copied from the row above only
  // when this call wrote it).
  for (int64_t split : {int64_t{0}, int64_t{3}, ow, ow + 1, 2 * ow, pixels / 2 + 2}) {
    std::vector<uint8_t> y(pixels * c, 7);
    kernels::u8_upsample_nearest_nhwc(ih, iw, c, oh, ow, sh.data(), sw.data(), x.data(), y.data(), 0, split);
    kernels::u8_upsample_nearest_nhwc(ih, iw, c, oh, ow, sh.data(), sw.data(), x.data(), y.data(), split, pixels);
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t h = 0; h < oh; ++h) {
        for (int64_t w = 0; w < ow; ++w) {
          for (int64_t ch = 0; ch < c; ++ch) {
            ASSERT_EQ(y[((n * oh + h) * ow + w) * c + ch], x[((n * ih + sh[h]) * iw + sw[w]) * c + ch])
                << "split=" << split << " n=" << n << " h=" << h << " w=" << w;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tqx
