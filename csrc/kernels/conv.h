// int8 convolution (and linear, as a 1x1 convolution) on NHWC uint8 activations and int8 weights
// with int32 accumulation and a fused requantize epilogue. Torch-free.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/isa.h"

namespace tqx::kernels {

struct ConvShape {
  int64_t batch, in_h, in_w, in_c;
  int64_t out_h, out_w, out_c;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t groups;
};

// Output height/width of a convolution (floor division, as PyTorch).
int64_t conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation);

// The epilogue. With acc = sum (x - input_zero_point) * w over the receptive field:
//   y = clamp(nearbyint(float(acc) * multiplier[oc] + bias[oc]) + output_zero_point, qmin, qmax)
// multiplier[oc] = x_scale * w_scale[oc] / y_scale and bias[oc] = float bias / y_scale, both
// float32 (see Note [Rounding] for the rounding rule). ReLU / ReLU6 / clamp fuse as qmin / qmax.
struct ConvEpilogue {
  int32_t input_zero_point;
  const float* multiplier;  // [out_c]
  const float* bias;        // [out_c]
  int32_t output_zero_point;
  int32_t qmin, qmax;
  // Optional fused residual add: r has y's layout ([pixels, out_c] uint8); before rounding
  //   v = (float(acc) * multiplier[oc] + bias[oc]) + float(r - residual_zero_point) * residual_multiplier
  // with residual_multiplier = r_scale / y_scale: conv + add (+ ReLU as qmin) with one rounding.
  const uint8_t* residual = nullptr;
  float residual_multiplier = 0.0f;
  int32_t residual_zero_point = 0;
};

// x: [batch, in_h, in_w, in_c] uint8 (NHWC); w: [out_c, kernel_h, kernel_w, in_c / groups] int8
// (OHWI, symmetric: zero point 0); y: [batch, out_h, out_w, out_c] uint8.
// Padding contributes the input zero point (real value 0).
void conv2d_u8s8_nhwc_scalar(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvEpilogue& e,
                             uint8_t* y);

// The same over output pixels [m_begin, m_end), m = (n * out_h + oh) * out_w + ow.
void conv2d_u8s8_nhwc_scalar_rows(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvEpilogue& e,
                                  uint8_t* y, int64_t m_begin, int64_t m_end);

// 64-byte aligned storage of packed weights.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t n);
  uint8_t* data() { return p_.get(); }
  const uint8_t* data() const { return p_.get(); }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> p_;
  size_t n_ = 0;
};

// Weights repacked once for the SIMD kernels (Note [Packed weights] in conv.cpp). Keeps the OHWI
// copy for the scalar path.
struct PackedConvWeights {
  int64_t out_c = 0, kernel_h = 0, kernel_w = 0, in_c_per_group = 0, groups = 1;
  bool depthwise = false;  // groups == channels, one input and one output channel per group
  int64_t k = 0;           // kernel_h * kernel_w * in_c_per_group
  int64_t k_padded = 0;    // k rounded up to a multiple of 4 (GEMM path)
  int64_t k_alloc = 0;     // k rounded up to a multiple of 64: the packed rows per column block
  int64_t n_blocks = 0;    // output channels per group in blocks of 16 (GEMM path)
  std::vector<int8_t> ohwi;       // [out_c, kernel_h, kernel_w, in_c_per_group]
  std::vector<int32_t> col_sums;  // [out_c] sum of each output channel's weights
  AlignedBytes packed;            // GEMM: [groups][n_blocks][k_alloc/4][16][4] int8;
                                  // depthwise: [taps/2 rounded up][channels rounded to 16][2] int16
  // GEMM, for tiles that multiply in int16 (AVX2 with 8-bit activations): the same blocks as int16
  // k-pairs, [groups][n_blocks][k_alloc/2][16][2]. Made on first use (thread-safe), so weights that
  // only ever meet 7-bit activations or VNNI tiles are held once.
  const int16_t* int16_blocks() const;
  // Depthwise 3x3 and 5x5: the taps in vpdpbusd quads (DepthwiseWeights::quads in gemm.h), made on
  // first use (thread-safe), so that kernels without them hold no copy; null for other shapes. Made
  // per call before, it cost the 7x7 layers of mobilenet_v2 a fifth of their time.
  const int8_t* depthwise_quads() const;

 private:
  struct Lazy {
    std::once_flag once;
    AlignedBytes data;
  };
  std::shared_ptr<Lazy> int16_ = std::make_shared<Lazy>();
  std::shared_ptr<Lazy> quads_ = std::make_shared<Lazy>();
};
PackedConvWeights pack_conv_weights(const int8_t* ohwi, int64_t out_c, int64_t kernel_h, int64_t kernel_w,
                                    int64_t in_c_per_group, int64_t groups);

// The epilogue vectors the microkernels read: each output channel's weight sum, multiplier and
// bias, padded with zeros to whole 16-column blocks per group (so that kernels may read full
// vectors), and whether no value before the clamp can overflow int32 (TileEpilogue::int_clamp).
// They depend on the weights and on e's multiplier, bias, residual (set or not) and residual
// multiplier only.
struct PreparedEpilogue {
  std::vector<int32_t> col_sums;
  std::vector<float> multiplier, bias;
  int64_t group_stride = 0;
  bool int_clamp = false;
};
PreparedEpilogue prepare_epilogue(const PackedConvWeights& w, const ConvEpilogue& e);

// Output pixels [m_begin, m_end) of the convolution with packed weights on the kernels of `isa`
// (capped to what was compiled). Bit-exact with the scalar reference for every ISA; the caller
// splits the pixel range over threads, and the result does not depend on the split.
// prepared: null (each call prepares its own), or prepare_epilogue(w, e) made earlier, for a
// caller that runs the layer again with the same multipliers (ops/conv.cpp keeps one per layer).
void conv2d_u8s8_nhwc_packed(const ConvShape& s, const PackedConvWeights& w, const uint8_t* x,
                             const ConvEpilogue& e, uint8_t* y, int64_t m_begin, int64_t m_end, Isa isa,
                             const PreparedEpilogue* prepared = nullptr);

// One convolution of a conv2d_pair: its shape, weights and epilogue (prepared: as above).
struct ConvStep {
  ConvShape shape;
  const PackedConvWeights& weights;
  ConvEpilogue epilogue;
  const PreparedEpilogue* prepared = nullptr;
};

// The first-convolution rows a band of conv2d_pair keeps: about this many bytes (Note [Conv pairs]).
constexpr int64_t kConvPairBandBytes = 96 * 1024;

// Two convolutions without the tensor between them in memory: y = second(first(x)), where first is
// pointwise (1x1, stride 1, no padding, one group) and its output is second's input (same batch,
// height and width; first.out_c == second.in_c). Computes second's output rows [row_begin, row_end)
// (row r: image r / out_h, row r % out_h) in bands, each band's first-conv rows going to a
// per-thread buffer of about band_bytes that the band's second call reads while they are in cache
// (Note [Conv pairs] in conv.cpp). The bytes equal the two convolutions run one after the other,
// for any split of the rows and any band size. Returns false, having written nothing, when the
// steps do not fit that description.
bool conv2d_pair_u8s8_nhwc_packed(const ConvStep& first, const ConvStep& second, const uint8_t* x, uint8_t* y,
                                  int64_t row_begin, int64_t row_end, Isa isa,
                                  int64_t band_bytes = kConvPairBandBytes);

// Whole convolution, single-threaded, on active_isa().
void conv2d_u8s8_nhwc(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvEpilogue& e, uint8_t* y);

// Elementwise y = clamp(nearbyint(((a - za) * sa + (b - zb) * sb) * inv_sy) + zy, qmin, qmax), float32.
struct AddParams {
  float a_scale, b_scale, inv_out_scale;
  int32_t a_zero_point, b_zero_point, out_zero_point;
  int32_t qmin, qmax;
};
void add_u8_scalar(int64_t n, const uint8_t* a, const uint8_t* b, const AddParams& p, uint8_t* y);

}  // namespace tqx::kernels
