// Parameter helpers and the run-time dispatch ladder of the quantize family.
#include "kernels/quantize.h"

#include <algorithm>

namespace tqx::kernels {

AffineParams make_affine_params(float scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  // Note [Rounding]: float32 reciprocal, computed once.
  return AffineParams{scale, 1.0f / scale, zero_point, qmin, qmax};
}

AffineParams make_requant_params(float multiplier, int32_t zero_point, int32_t qmin, int32_t qmax) {
  return AffineParams{1.0f / multiplier, multiplier, zero_point, qmin, qmax};
}

const QuantizeKernels& quantize_kernels_for(Isa isa) {
  if (isa >= Isa::kAVX512) {
    if (const QuantizeKernels* k = quantize_kernels_avx512()) return *k;
  }
  if (isa >= Isa::kAVX2) {
    if (const QuantizeKernels* k = quantize_kernels_avx2()) return *k;
  }
  return quantize_kernels_scalar();
}

const QuantizeKernels& quantize_kernels() { return quantize_kernels_for(active_isa()); }

void f32_planes_to_u8_pixels(const QuantizeKernels& k, int64_t channels, int64_t hw, const float* x, uint8_t* y,
                             int64_t p_begin, int64_t p_end, const AffineParams& p) {
  constexpr int64_t kBlock = 256;  // pixels per block: the buffer stays in L1 for any channel count up to 64
  constexpr int64_t kMaxChannels = 64;
  // Each plane's block kPrefetchAhead pixels on (4 KiB) is prefetched while this one is quantized: an
  // image fresh from memory is three streams read 1 KiB at a time, which the hardware prefetcher
  // alone left latency-bound (224x224 RGB from DRAM, Zen 5: 68 -> 48 us; 256 or 512 pixels ahead
  // gave less; 14 -> 15.5 us when the image is already in cache).
  constexpr int64_t kPrefetchAhead = 1024;
  uint8_t buf[kMaxChannels * kBlock];
  for (int64_t c0 = 0; c0 < channels; c0 += kMaxChannels) {  // more channels: in groups (rare: images have 1-4)
    const int64_t nc = std::min(kMaxChannels, channels - c0);
    for (int64_t b = p_begin; b < p_end; b += kBlock) {
      const int64_t n = std::min(kBlock, p_end - b);
      const int64_t ahead = std::min(b + kPrefetchAhead, p_end);
      const int64_t ahead_end = std::min(ahead + kBlock, p_end);
      for (int64_t c = 0; c < nc; ++c) {
        const float* plane = x + (c0 + c) * hw;
        for (int64_t i = ahead; i < ahead_end; i += 16) __builtin_prefetch(plane + i);
        k.f32_u8_quantize(n, plane + b, buf + c * kBlock, p);
      }
      uint8_t* out = y + b * channels + c0;
      if (channels == 3) {  // RGB: the common case
        k.u8_interleave3(n, buf, buf + kBlock, buf + 2 * kBlock, out);
      } else if (nc == 3) {
        for (int64_t i = 0; i < n; ++i, out += channels) {
          out[0] = buf[i];
          out[1] = buf[kBlock + i];
          out[2] = buf[2 * kBlock + i];
        }
      } else {
        for (int64_t i = 0; i < n; ++i, out += channels) {
          for (int64_t c = 0; c < nc; ++c) out[c] = buf[c * kBlock + i];
        }
      }
    }
  }
}

}  // namespace tqx::kernels
