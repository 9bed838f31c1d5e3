// Argument checks and layout helpers shared by the quantx operators (ATen core headers only).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/quantize.h"

namespace tqx::ops {

// The integer storage an op writes for a requested dtype: torch.uint8 / torch.quint8 -> uint8,
// torch.int8 / torch.qint8 -> int8, torch.int16 -> int16, torch.int32 / torch.qint32 -> int32,
// torch.quint4x2 -> uint8 holding [0, 15].
struct Storage {
  c10::ScalarType dtype;  // the plain integer dtype of the result
  int64_t qmin;           // full range of the format
  int64_t qmax;
};
Storage storage_for(const char* op, c10::ScalarType requested);
// "torch.quint8"-style names for error messages.
const char* dtype_name(c10::ScalarType t);
Storage storage_of_tensor(const char* op, const char* arg, const at::Tensor& t);

// Applies optional quant_min / quant_max overrides, checking they fit the storage.
void apply_range(const char* op, Storage& s, c10::optional<int64_t> quant_min,
                 c10::optional<int64_t> quant_max);

void check_float(const char* op, const char* arg, const at::Tensor& t);
void check_cpu(const char* op, const char* arg, const at::Tensor& t);
// scale must be finite and > 0 (and representable as a float32 > 0).
void check_scale(const char* op, double scale);
void check_zero_point(const char* op, int64_t zp, int64_t qmin, int64_t qmax);
void check_qrange(const char* op, int64_t qmin, int64_t qmax);
// Returns the normalised axis (negative values count from the end).
int64_t check_axis(const char* op, const at::Tensor& t, int64_t axis);
// Checks a per-channel qparam vector: 1-D, `channels` long; returns it contiguous in `dtype`.
at::Tensor check_channel_vector(const char* op, const char* arg, const at::Tensor& v,
                                int64_t channels, c10::ScalarType dtype);
// Checks per-channel scales (finite, > 0) and zero points (in range); returns float / int64 copies.
void check_channel_qparams(const char* op, const at::Tensor& scales, const at::Tensor& zero_points,
                           int64_t channels, int64_t qmin, int64_t qmax, at::Tensor* scales_f32,
                           at::Tensor* zps_i64);

// A tensor seen as [outer, channels, inner] around `axis`.
struct ChannelView {
  int64_t outer;
  int64_t channels;
  int64_t inner;
};
ChannelView channel_view(const at::Tensor& t, int64_t axis);

// Runs fn(begin, end) over [0, n) in chunks on the intra-op pool; element-wise kernels give the
// same result for any thread count.
// The shape two tensors broadcast to, as aten's binary ops do; an error naming op and both
// shapes ("qa and qb") when they do not broadcast.
std::vector<int64_t> broadcast_shape(const char* op, c10::IntArrayRef a, c10::IntArrayRef b);

void parallel_chunks(int64_t n, const std::function<void(int64_t, int64_t)>& fn);
// Runs fn(o, c) for every (outer, channel) row of a ChannelView, in parallel.
void parallel_rows(const ChannelView& v, const std::function<void(int64_t, int64_t)>& fn);

// An uninitialised per-tensor-affine quantized CPU tensor, as at::_empty_affine_quantized, whose
// storage of 64 KiB or more comes from the ops' output-buffer pool (Note [Output buffers] in
// ops/buffers.cpp): the quantx ops make their outputs with it.
at::Tensor empty_quantized(c10::IntArrayRef sizes, const c10::TensorOptions& options, double scale, int64_t zero_point,
                           c10::MemoryFormat format = c10::MemoryFormat::Contiguous);

// The AffineParams of per-tensor qparams (Note [Rounding]).
kernels::AffineParams affine(double scale, int64_t zero_point, int64_t qmin, int64_t qmax);

}  // namespace tqx::ops
