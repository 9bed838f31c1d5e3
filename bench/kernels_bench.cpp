// Google Benchmark of the torch-free kernels, per ISA variant; reports bytes/s (GB/s).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/histogram.h"
#include "bench_util.h"
#include "kernels/isa.h"
#include "kernels/quantize.h"
#include "kernels/reduce.h"

namespace {

using tqx::kernels::Isa;

std::vector<float> data(int64_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

using tqx::bench::usable;

void BM_QuantizeF32U8(benchmark::State& state, Isa isa) {
  if (!usable(state, isa)) return;
  const int64_t n = state.range(0);
  const auto x = data(n);
  std::vector<uint8_t> y(n);
  const auto& k = tqx::kernels::quantize_kernels_for(isa);
  const auto p = tqx::kernels::make_affine_params(0.02f, 128, 0, 255);
  for (auto _ : state) {
    k.f32_u8_quantize(n, x.data(), y.data(), p);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * n * (sizeof(float) + 1));
}

void BM_DequantizeU8F32(benchmark::State& state, Isa isa) {
  if (!usable(state, isa)) return;
  const int64_t n = state.range(0);
  std::vector<uint8_t> q(n, 77);
  std::vector<float> y(n);
  const auto& k = tqx::kernels::quantize_kernels_for(isa);
  const auto p = tqx::kernels::make_affine_params(0.02f, 128, 0, 255);
  for (auto _ : state) {
    k.u8_f32_dequantize(n, q.data(), y.data(), p);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * n * (sizeof(float) + 1));
}

void BM_FakeQuantize(benchmark::State& state, Isa isa) {
  if (!usable(state, isa)) return;
  const int64_t n = state.range(0);
  const auto x = data(n);
  std::vector<float> y(n);
  std::vector<uint8_t> m(n);
  const auto& k = tqx::kernels::quantize_kernels_for(isa);
  const auto p = tqx::kernels::make_affine_params(0.02f, 128, 0, 255);
  for (auto _ : state) {
    k.f32_fake_quantize(n, x.data(), y.data(), m.data(), p);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * n * (2 * sizeof(float) + 1));
}

void BM_MinMax(benchmark::State& state, Isa isa) {
  if (!usable(state, isa)) return;
  const int64_t n = state.range(0);
  const auto x = data(n);
  const auto& k = tqx::kernels::reduce_kernels_for(isa);
  float mn, mx;
  for (auto _ : state) {
    benchmark::DoNotOptimize(k.f32_minmax(n, x.data(), &mn, &mx));
  }
  state.SetBytesProcessed(state.iterations() * n * sizeof(float));
}

void BM_HistogramObserve(benchmark::State& state, Isa isa) {
  if (!usable(state, isa)) return;
  const int64_t n = state.range(0);
  const auto x = data(n);
  tqx::kernels::set_max_isa(isa);
  tqx::kernels::Histogram h(2048);
  for (auto _ : state) {
    h.observe(x.data(), n);
  }
  tqx::kernels::reset_max_isa();
  state.SetBytesProcessed(state.iterations() * n * sizeof(float));
  state.SetItemsProcessed(state.iterations() * n);
}

constexpr int64_t kInput = 3 * 224 * 224;

#define TQX_BENCH_ALL_ISAS(fn)                                                          \
  BENCHMARK_CAPTURE(fn, scalar, Isa::kScalar)->Arg(kInput)->Arg(1 << 20);              \
  BENCHMARK_CAPTURE(fn, avx2, Isa::kAVX2)->Arg(kInput)->Arg(1 << 20);                  \
  BENCHMARK_CAPTURE(fn, avx512, Isa::kAVX512)->Arg(kInput)->Arg(1 << 20)

TQX_BENCH_ALL_ISAS(BM_QuantizeF32U8);
TQX_BENCH_ALL_ISAS(BM_DequantizeU8F32);
TQX_BENCH_ALL_ISAS(BM_FakeQuantize);
TQX_BENCH_ALL_ISAS(BM_MinMax);
TQX_BENCH_ALL_ISAS(BM_HistogramObserve);

}  // namespace

BENCHMARK_MAIN();
