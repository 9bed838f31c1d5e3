// Google Benchmark of the int8 convolution per ISA on the layers the issue names (resnet18's
// 3x3 64->64 at 56x56, resnet50's 1x1 convolutions and classifier, a depthwise layer), one
// thread. Counters: GMAC/s and the fraction of the vpdpbusd / tdpbusd peaks measured here (the
// vpdpbusd peak around each benchmark: on a core shared with other processes it moves).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "bench_util.h"
#include "kernels/conv.h"
#include "kernels/isa.h"
#include "peak.h"

namespace {

using tqx::kernels::Isa;

double vnni_peak() { return tqx::kernels::isa_supported(Isa::kAVX512VNNI) ? tqx::bench::vpdpbusd_peak_gmacs() : 0.0; }

// The peak of the path being measured when it runs without VNNI (the AVX2 tiles).
double avx2_peak(bool seven_bit) {
  if (!tqx::kernels::isa_supported(Isa::kAVX2)) return 0.0;
  return seven_bit ? tqx::bench::vpmaddubsw_peak_gmacs() : tqx::bench::vpmaddwd_peak_gmacs();
}

double amx_peak() {
  static const double p = tqx::kernels::isa_supported(Isa::kAMX) ? tqx::bench::tdpbusd_peak_gmacs() : 0.0;
  return p;
}

// args: in_c, out_c, h(=w), kernel, stride, groups
// seven_bit: activations and input zero point below 128, as the x86 preset's (AVX2 then runs its
// vpmaddubsw tiles). residual: the epilogue adds a residual tensor (quantx::conv2d_add).
void BM_ConvBits(benchmark::State& state, Isa isa, bool seven_bit, bool residual = false) {
  if (!tqx::bench::usable(state, isa)) return;
  const int64_t c = state.range(0), oc = state.range(1), hw = state.range(2), k = state.range(3),
                stride = state.range(4), groups = state.range(5);
  const int64_t pad = k / 2, o = tqx::kernels::conv_out_size(hw, k, stride, pad, 1);
  std::mt19937 rng(1);
  std::vector<uint8_t> x(hw * hw * c), y(o * o * oc), r(residual ? o * o * oc : 0);
  std::vector<int8_t> w(oc * k * k * (c / groups));
  for (auto& v : x) v = static_cast<uint8_t>(seven_bit ? rng() & 0x7F : rng());
  for (auto& v : w) v = static_cast<int8_t>(rng());
  for (auto& v : r) v = static_cast<uint8_t>(rng());
  std::vector<float> mult(oc, 1e-3f), bias(oc, 0.5f);
  const tqx::kernels::ConvShape s{1, hw, hw, c, o, o, oc, k, k, stride, stride, pad, pad, 1, 1, groups};
  const auto p = tqx::kernels::pack_conv_weights(w.data(), oc, k, k, c / groups, groups);
  tqx::kernels::ConvEpilogue e{seven_bit ? 64 : 128, mult.data(), bias.data(), 0, 0, 255};
  if (residual) {
    e.residual = r.data();
    e.residual_multiplier = 0.5f;
    e.residual_zero_point = 7;
  }
  const double peak_before = vnni_peak();
  for (auto _ : state) {
    tqx::kernels::conv2d_u8s8_nhwc_packed(s, p, x.data(), e, y.data(), 0, o * o, isa);
    benchmark::DoNotOptimize(y.data());
  }
  const double macs = static_cast<double>(o * o * oc * k * k * (c / groups));
  state.counters["GMAC/s"] = benchmark::Counter(macs * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["MACs"] = macs;
  const double peak = std::max(peak_before, vnni_peak());
  state.counters["vnni_peak_GMAC/s"] = peak;
  if (peak > 0) {
    state.counters["of_vnni_peak"] =
        benchmark::Counter(macs * 1e-9 * state.iterations() / peak, benchmark::Counter::kIsRate);
  }
  if (amx_peak() > 0) state.counters["amx_peak_GMAC/s"] = amx_peak();
  if (isa == Isa::kAVX2) {
    const double p2 = avx2_peak(seven_bit);
    state.counters["avx2_peak_GMAC/s"] = p2;
    if (p2 > 0) {
      state.counters["of_avx2_peak"] =
          benchmark::Counter(macs * 1e-9 * state.iterations() / p2, benchmark::Counter::kIsRate);
    }
  }
}

// The same convolution with its weights out of cache, as in a whole model, where every layer's
// weights are evicted by the rest of the network before the next inference: the benchmark cycles
// through enough distinct packed copies of the weights to exceed the last-level cache (64 MiB).
void BM_ConvColdWeights(benchmark::State& state, Isa isa) {
  if (!tqx::bench::usable(state, isa)) return;
  const int64_t c = state.range(0), oc = state.range(1), hw = state.range(2), k = state.range(3),
                stride = state.range(4);
  const int64_t pad = k / 2, o = tqx::kernels::conv_out_size(hw, k, stride, pad, 1);
  std::mt19937 rng(1);
  std::vector<uint8_t> x(hw * hw * c), y(o * o * oc);
  for (auto& v : x) v = static_cast<uint8_t>(rng());
  std::vector<int8_t> w(oc * k * k * c);
  const int64_t copies = std::clamp<int64_t>((int64_t{64} << 20) / static_cast<int64_t>(w.size()) + 1, 2, 4096);
  std::vector<tqx::kernels::PackedConvWeights> packed;
  for (int64_t i = 0; i < copies; ++i) {
    for (auto& v : w) v = static_cast<int8_t>(rng());
    packed.push_back(tqx::kernels::pack_conv_weights(w.data(), oc, k, k, c, 1));
  }
  std::vector<float> mult(oc, 1e-3f), bias(oc, 0.5f);
  const tqx::kernels::ConvShape s{1, hw, hw, c, o, o, oc, k, k, stride, stride, pad, pad, 1, 1, 1};
  const tqx::kernels::ConvEpilogue e{128, mult.data(), bias.data(), 0, 0, 255};
  std::vector<tqx::kernels::PreparedEpilogue> prepared;
  for (const auto& p : packed) prepared.push_back(tqx::kernels::prepare_epilogue(p, e));
  int64_t i = 0;
  for (auto _ : state) {
    tqx::kernels::conv2d_u8s8_nhwc_packed(s, packed[i], x.data(), e, y.data(), 0, o * o, isa, &prepared[i]);
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % copies;
  }
  const double macs = static_cast<double>(o * o * oc * k * k * c);
  state.counters["GMAC/s"] = benchmark::Counter(macs * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["weight_copies"] = static_cast<double>(copies);
}

void BM_Conv(benchmark::State& state, Isa isa) { BM_ConvBits(state, isa, false); }
void BM_Conv7(benchmark::State& state, Isa isa) { BM_ConvBits(state, isa, true); }
void BM_Conv7Residual(benchmark::State& state, Isa isa) { BM_ConvBits(state, isa, true, true); }

void ConvShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"c", "oc", "hw", "k", "s", "g"});
  b->Args({64, 64, 56, 3, 1, 1});      // resnet18 layer1
  b->Args({128, 128, 28, 3, 1, 1});    // resnet18 layer2
  b->Args({256, 256, 14, 3, 1, 1});    // resnet18 layer3
  b->Args({512, 512, 7, 3, 1, 1});     // resnet18 layer4
  b->Args({64, 128, 56, 3, 2, 1});     // resnet18 layer2's first conv (stride 2)
  b->Args({256, 512, 14, 3, 2, 1});    // resnet18 layer4's first conv (stride 2)
  b->Args({256, 64, 56, 1, 1, 1});     // resnet50 1x1 reduce
  b->Args({64, 256, 56, 1, 1, 1});     // resnet50 1x1 expand
  b->Args({1024, 256, 14, 1, 1, 1});   // resnet50 layer3 reduce
  b->Args({512, 2048, 7, 1, 1, 1});    // resnet50 layer4 expand
  b->Args({2048, 1000, 1, 1, 1, 1});   // resnet50 fc (batch 1: a GEMV)
  b->Args({3, 64, 224, 7, 2, 1});      // stem
  b->Args({144, 144, 56, 3, 1, 144});  // mobilenet_v2 depthwise
  b->Args({96, 96, 112, 3, 2, 96});    // mobilenet_v2 depthwise, stride 2
  b->Args({3, 32, 224, 3, 2, 1});      // mobilenet_v2 stem
  b->Args({32, 32, 112, 3, 1, 32});    // mobilenet_v2 depthwise, first block
  b->Args({144, 144, 56, 3, 2, 144});  // mobilenet_v2 depthwise, stride 2
  b->Args({384, 384, 14, 3, 1, 384});  // mobilenet_v2 depthwise
  b->Args({960, 960, 7, 3, 1, 960});   // mobilenet_v2 depthwise
  b->Args({16, 96, 112, 1, 1, 1});     // mobilenet_v2 1x1 expand
  b->Args({32, 16, 112, 1, 1, 1});     // mobilenet_v2 1x1 project
  b->Args({24, 144, 56, 1, 1, 1});     // mobilenet_v2 1x1 expand
  b->Args({144, 24, 56, 1, 1, 1});     // mobilenet_v2 1x1 project
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK_CAPTURE(BM_Conv, scalar, Isa::kScalar)->Args({64, 64, 56, 3, 1, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Conv, avx2, Isa::kAVX2)->Apply(ConvShapes);
BENCHMARK_CAPTURE(BM_Conv7, avx2, Isa::kAVX2)->Apply(ConvShapes);
// The layers that carry a residual add in resnet18 and mobilenet_v2 (conv2d_add).
BENCHMARK_CAPTURE(BM_Conv7Residual, avx2, Isa::kAVX2)
    ->ArgNames({"c", "oc", "hw", "k", "s", "g"})
    ->Args({64, 64, 56, 3, 1, 1})
    ->Args({144, 24, 56, 1, 1, 1})
    ->Args({192, 32, 28, 1, 1, 1})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Conv, avx_vnni, Isa::kAVXVNNI)->Apply(ConvShapes);
BENCHMARK_CAPTURE(BM_Conv, avx512_vnni, Isa::kAVX512VNNI)->Apply(ConvShapes);
BENCHMARK_CAPTURE(BM_ConvColdWeights, avx512_vnni, Isa::kAVX512VNNI)
    ->ArgNames({"c", "oc", "hw", "k", "s"})
    ->Args({512, 512, 7, 3, 1})    // resnet18 layer4: 2.4 MB of weights
    ->Args({256, 256, 14, 3, 1})   // resnet18 layer3
    ->Args({512, 2048, 7, 1, 1})   // resnet50 layer4 expand
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Conv, amx, Isa::kAMX)->Apply(ConvShapes);

}  // namespace
