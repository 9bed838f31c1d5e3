// Shared helpers for the kernel tests: the ISA variants to check and deterministic inputs.
#pragma once

#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/isa.h"

namespace tqx::testing {

// Sizes around every vector width we use (8, 16, 32, 64 lanes) and the scalar tail.
inline const std::vector<int64_t>& edge_sizes() {
  static const std::vector<int64_t> sizes = {0,  1,  2,  7,  8,  9,  15,  16,  17,  31,  32,  33,
                                             47, 63, 64, 65, 96, 127, 128, 129, 255, 1000, 4099};
  return sizes;
}

// Values that stress rounding: exact halves (k + 0.5) * scale, values beyond the range,
// signed zeros, NaN and infinities, and random data.
inline std::vector<float> stress_values(int64_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> wide(-400.0f, 400.0f);
  std::uniform_int_distribution<int> k(-300, 300);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (i % 11) {
      case 0: v[i] = (static_cast<float>(k(rng)) + 0.5f) * scale; break;  // ties
      case 1: v[i] = wide(rng) * scale * 10.0f; break;                      // saturation
      case 2: v[i] = (i % 22 == 2) ? -0.0f : 0.0f; break;
      case 3: v[i] = (i % 33 == 3) ? std::numeric_limits<float>::quiet_NaN() : 1e30f; break;
      case 4: v[i] = (i % 44 == 4) ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity(); break;
      default: v[i] = wide(rng) * scale; break;
    }
  }
  return v;
}

inline std::vector<float> finite_values(int64_t n, uint32_t seed, float lo = -3.0f, float hi = 5.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

// Bitwise float equality (so NaN == NaN and -0 != +0 are both checked).
inline bool same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

}  // namespace tqx::testing
