// Quantization ranges and the choice of (scale, zero_point) from an observed (min, max).
#pragma once

#include <cstdint>

namespace tqx::kernels {

// Integer formats that torchquantx quantizes to. 4-bit values are stored in 8-bit containers.
enum class QFormat : int {
  kUInt8 = 0,   // quint8  [0, 255]
  kInt8 = 1,    // qint8   [-128, 127]
  kInt16 = 2,   // int16   [-32768, 32767]
  kInt32 = 3,   // qint32  [-2^31, 2^31 - 1]
  kUInt4 = 4,   // [0, 15]   stored in uint8
  kInt4 = 5,    // [-8, 7]   stored in int8
};

struct QRange {
  int64_t qmin;
  int64_t qmax;
};

// The full range of `format`; with reduce_range one bit fewer (PyTorch's meaning: the range is
// halved, e.g. quint8 -> [0, 127], qint8 -> [-64, 63]), which avoids vpmaddubsw saturation on
// CPUs without VNNI.
QRange quant_range(QFormat format, bool reduce_range);

struct QParams {
  float scale;
  int64_t zero_point;
};

// Default lower bound for scales: float32 epsilon, as torch.ao.quantization observers use.
constexpr float kDefaultScaleEps = 1.1920928955078125e-07f;

// Chooses qparams for values in [min_val, max_val] mapped to [qmin, qmax], computed in float32
// exactly as torch.ao.quantization's observers do for the same settings:
//   affine:    scale = (max(max,0) - min(min,0)) / (qmax - qmin), at least eps;
//              zero_point = clamp(qmin - nearbyint(min(min,0) / scale), qmin, qmax)
//   symmetric: scale = max(-min(min,0), max(max,0)) / ((qmax - qmin) / 2), at least eps;
//              zero_point = 0 for signed ranges, (qmin + qmax + 1) / 2 for unsigned ones
//              (128 for quint8, as PyTorch; PyTorch's reduce_range and custom-range quirks for
//              unsigned symmetric zero points are not copied: see docs/architecture.md).
// Degenerate inputs always give a finite scale > 0: NaN bounds count as 0, +-Inf and huge
// bounds are clamped to +-1e38 / 2-ish so the range stays finite; min_val > max_val (no data
// observed) gives scale 1 and zero_point clamp(0, qmin, qmax).
QParams choose_qparams(float min_val, float max_val, int64_t qmin, int64_t qmax, bool symmetric,
                       float eps = kDefaultScaleEps);

// Per-channel version: n independent choices.
void choose_qparams_per_channel(const float* min_val, const float* max_val, int64_t n,
                                int64_t qmin, int64_t qmax, bool symmetric, float eps,
                                float* scale, int64_t* zero_point);

}  // namespace tqx::kernels
