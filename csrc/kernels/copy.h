// Byte-moving kernels on uint8 (quint8) values: concatenation with per-input requantize tables,
// nearest-neighbour upsampling (NHWC). Plain copies: memcpy is the fast path on every ISA.
#pragma once

#include <cstdint>

#include "kernels/isa.h"

namespace tqx::kernels {

// Rows [r_begin, r_end) of an [outer, sum(inner)] concatenation: row r of y is row r of each input
// i ([outer, inner[i]]) in order, copied, or mapped through tables[i] (kernels/lut.h) when that is
// not null.
void u8_cat_rows(int64_t n_inputs, const uint8_t* const* xs, const int64_t* inner, const uint8_t* const* tables,
                 uint8_t* y, int64_t r_begin, int64_t r_end, Isa isa);

// Output pixels [m_begin, m_end) of nearest upsampling of [batch, in_h, in_w, channels] to
// [batch, out_h, out_w, channels]: pixel (oh, ow) copies input pixel (src_h[oh], src_w[ow]).
void u8_upsample_nearest_nhwc(int64_t in_h, int64_t in_w, int64_t channels, int64_t out_h, int64_t out_w,
                              const int64_t* src_h, const int64_t* src_w, const uint8_t* x, uint8_t* y,
                              int64_t m_begin, int64_t m_end);

}  // namespace tqx::kernels
