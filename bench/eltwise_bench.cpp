// Google Benchmark of the #4 kernels per ISA: u8 mul, table lookup, NHWC max / global-average pool.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/eltwise.h"
#include "bench_util.h"
#include "kernels/isa.h"
#include "kernels/lut.h"
#include "kernels/pool.h"

namespace {

using tqx::kernels::Isa;

std::vector<uint8_t> bytes(int64_t n) {
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> d(0, 255);
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<uint8_t>(d(rng));
  return v;
}

using tqx::bench::usable;

void BM_MulU8(benchmark::State& state, Isa isa) {
  if (!usable(state, isa)) return;
  const int64_t n = state.range(0);
  const auto a = bytes(n), b = bytes(n + 1);
  std::vector<uint8_t> y(n);
  const auto& k = tqx::kernels::eltwise_kernels_for(isa);
  const tqx::kernels::MulParams p{0.035f, 110, 140, 90, 0, 255};
  for (auto _ : state) {
    k.u8_mul(n, a.data(), b.data(), p, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 3);
}

void lut_loop(benchmark::State& state, const tqx::kernels::EltwiseKernels& k) {
  const int64_t n = state.range(0);
  const auto x = bytes(n);
  std::vector<uint8_t> y(n);
  uint8_t table[256];
  tqx::kernels::build_u8_lut(tqx::kernels::LutFunction::kHardswish, 0.05f, 128, 0.04f, 30, table);
  for (auto _ : state) {
    k.u8_lut(n, x.data(), table, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 2);
}

void BM_LutU8(benchmark::State& state, Isa isa) {
  if (usable(state, isa)) lut_loop(state, tqx::kernels::eltwise_kernels_for(isa));
}

// The AVX-512BW lookup, which dispatch passes over on CPUs with VBMI.
void BM_LutU8Avx512Bw(benchmark::State& state) {
  if (usable(state, Isa::kAVX512)) lut_loop(state, *tqx::kernels::eltwise_kernels_avx512());
}

// 3x3 stride-2 max pool of 1x56x56x96 (NHWC).
void BM_MaxPool3x3(benchmark::State& state, Isa isa) {
  if (!usable(state, isa)) return;
  const tqx::kernels::Pool2dShape s{1, 56, 56, 96, 28, 28, 3, 3, 2, 2, 1, 1, 1, 1};
  const auto x = bytes(56 * 56 * 96);
  std::vector<uint8_t> y(28 * 28 * 96);
  for (auto _ : state) {
    tqx::kernels::max_pool2d_u8_nhwc(s, x.data(), y.data(), 0, 28 * 28, isa);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(x.size()));
}

// Global average pool of 1x7x7x960 (MobileNetV3's last pool).
void BM_GlobalAvgPool(benchmark::State& state, Isa isa) {
  if (!usable(state, isa)) return;
  const tqx::kernels::Pool2dShape s{1, 7, 7, 960, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0};
  const tqx::kernels::AvgPoolParams p{0.05f, 0.05f, 100, 100, true, 0};
  const auto x = bytes(7 * 7 * 960);
  std::vector<uint8_t> y(960);
  for (auto _ : state) {
    tqx::kernels::adaptive_avg_pool2d_u8_nhwc(s, p, x.data(), y.data(), 0, 1, isa);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(x.size()));
}

#define TQX_BENCH_ISAS(fn, ...)                                   \
  BENCHMARK_CAPTURE(fn, scalar, Isa::kScalar) __VA_ARGS__;        \
  BENCHMARK_CAPTURE(fn, avx2, Isa::kAVX2) __VA_ARGS__;            \
  BENCHMARK_CAPTURE(fn, avx512, Isa::kAVX512) __VA_ARGS__

TQX_BENCH_ISAS(BM_MulU8, ->Arg(301056));
TQX_BENCH_ISAS(BM_LutU8, ->Arg(301056));
BENCHMARK(BM_LutU8Avx512Bw)->Arg(301056);
TQX_BENCH_ISAS(BM_MaxPool3x3);
TQX_BENCH_ISAS(BM_GlobalAvgPool);

}  // namespace
