// Element-wise kernels on uint8 (quint8) values: multiply with requantize, 256-entry lookup tables.
#pragma once

#include <cstdint>

#include "kernels/isa.h"

namespace tqx::kernels {

// y = clamp(nearbyint(float((a - za) * (b - zb)) * multiplier) + zy, qmin, qmax): the product is
// exact in int32, the requantize is Note [Rounding]'s with multiplier = a_scale * b_scale / y_scale
// (float32, as quantized::mul). A fused ReLU is qmin = zy.
struct MulParams {
  float multiplier;
  int32_t a_zero_point, b_zero_point, out_zero_point;
  int32_t qmin, qmax;
};

// One ISA's implementation of the family; entries never null.
struct EltwiseKernels {
  Isa isa;
  void (*u8_mul)(int64_t n, const uint8_t* a, const uint8_t* b, const MulParams& p, uint8_t* y);
  // y[i] = table[x[i]] (a 256-entry table from kernels/lut.h): vpshufb over the table's 16 rows
  // (AVX2, AVX-512BW) or two vpermi2b over the table held in four registers (AVX-512 VBMI).
  void (*u8_lut)(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* y);
};

const EltwiseKernels& eltwise_kernels_scalar();
const EltwiseKernels* eltwise_kernels_avx2();
const EltwiseKernels* eltwise_kernels_avx512();
// The AVX-512 table with the VBMI lookup; null where the CPU lacks AVX-512 VBMI. Dispatch at the
// AVX-512 level prefers it (VBMI is a feature within a level, not a level of its own).
const EltwiseKernels* eltwise_kernels_avx512_vbmi();
const EltwiseKernels& eltwise_kernels_for(Isa isa);
const EltwiseKernels& eltwise_kernels();

}  // namespace tqx::kernels
