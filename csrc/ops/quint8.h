// Helpers of the quantx operators that take and return PyTorch quint8 tensors (NHWC inside).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>

#include <cstdint>

#include "ops/common.h"

namespace tqx::ops {

inline void check_quint8(const char* op, const char* arg, const at::Tensor& q) {
  TORCH_CHECK(q.defined() && q.scalar_type() == c10::kQUInt8 && q.qscheme() == c10::kPerTensorAffine, op, ": ", arg,
              " should be a per-tensor quint8 quantized tensor, got ",
              q.defined() ? (q.is_quantized() ? dtype_name(q.scalar_type()) : "a float tensor") : "None");
}

// The layout an op works in: channels-last for 4-D tensors (what quantx convolutions return, and
// what the NHWC kernels read), else contiguous.
inline c10::MemoryFormat work_format(const at::Tensor& t) {
  return t.dim() == 4 ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
}

inline const uint8_t* u8_data(const at::Tensor& q) {
  return reinterpret_cast<const uint8_t*>(q.data_ptr<c10::quint8>());
}
inline uint8_t* u8_data_mut(at::Tensor& q) { return reinterpret_cast<uint8_t*>(q.data_ptr<c10::quint8>()); }

}  // namespace tqx::ops
