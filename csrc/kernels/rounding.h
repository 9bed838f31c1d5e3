// The one rounding rule of torchquantx, stated once and cited everywhere as Note [Rounding].
#pragma once

// Note [Rounding]
// ~~~~~~~~~~~~~~~
// Every float -> integer step follows the rule of PyTorch's CPU quantizer, so our outputs compare
// bit-for-bit with torch.quantize_per_tensor / quantize_per_channel and the fake-quantize ops:
//
//   inv_scale = 1.0f / scale                      (float32 reciprocal, computed once per scale)
//   q         = clamp(nearbyint(x * inv_scale) + zero_point, qmin, qmax)
//
// * The product x * inv_scale is float32; it is NOT a division by scale (PyTorch multiplies by
//   the reciprocal, and x / scale can differ from it in the last bit).
// * nearbyint under the default floating-point environment rounds half to even (as
//   torch.round does); SIMD code uses the same mode (cvtps2dq / roundscale with RNE).
// * Because qmin - zero_point and qmax - zero_point are integers, clamping the float product to
//   [qmin - zp, qmax - zp] before rounding gives the same result as clamping after; SIMD code
//   clamps first so that no conversion can overflow, except where no value can reach 2^31
//   (TileEpilogue::int_clamp: the AVX2 GEMM tiles then clamp the rounded integers).
// * NaN quantizes to qmin (PyTorch does the same through its int64 cast). +-Inf and values far
//   outside the range saturate to qmax / qmin; here PyTorch's int64 cast is undefined behaviour
//   and on x86 gives qmin for +Inf too: we deliberately saturate instead.
// * For 32-bit targets PyTorch adds zero_point in float32 before the cast; the reference does
//   the same so that qint32 results match as well.
//
// Dequantize:  x = float(q - zero_point) * scale, the difference taken in integers (exact; for
//              8/16-bit values it equals float(q) - float(zero_point)), the product in float32.
// Requantize:  an int32 accumulator `acc` with real value acc * in_scale becomes
//              q = clamp(nearbyint(float(acc) * multiplier) + zp, qmin, qmax),
//              multiplier = in_scale / out_scale in float32 (in_scale = x_scale * w_scale
//              for a GEMM); i.e. quantize() applied to float(acc) with inv_scale = multiplier.
// Fake-quantize: y = (clamp(nearbyint(x * inv_scale) + zp, qmin, qmax) - zp) * scale, and the
//              straight-through mask is qmin <= nearbyint(x * inv_scale) + zp <= qmax.
