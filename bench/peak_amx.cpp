// The AMX tdpbusd peak: four accumulator tiles fed from tiles loaded once.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "kernels/isa.h"
#include "peak.h"

namespace tqx::bench {

double tdpbusd_peak_gmacs() {
  tqx::kernels::detected_isa();  // requests the OS permission for the tile state
  struct alignas(64) Config {
    uint8_t palette = 1, start = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
  } cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  alignas(64) static uint8_t buf[16 * 64] = {1};
  alignas(64) static int32_t out[16 * 16];
  _tile_loadconfig(&cfg);
  _tile_loadd(4, buf, 64);
  _tile_loadd(5, buf, 64);
  _tile_loadd(6, buf, 64);
  _tile_loadd(7, buf, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  constexpr long kIters = 2'000'000;
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long it = 0; it < kIters / 4; ++it) {
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(kIters / 4 * 4) * 16.0 * 16.0 * 64.0 / s * 1e-9);
  }
  _tile_release();
  return best;
}

}  // namespace tqx::bench
