// Prepare for quantization-aware training: the PTQ plan (canonicalize + insert_observers, so
// fake-quantizers sit exactly where PTQ observes), with each quantized conv/linear reading its
// weights from trainable parameters and BatchNorm folding simulated.
//
// Before (training-mode model):  conv1 -> bn1 -> relu -> fc
// After (one flat graph; parameters `conv1_weight`, `bn1_weight`, ... and BN buffers on the module):
//   %t  = prim::GetAttr[name="training"](%self)
//   %f0 = prim::GetAttr[name="_tqx_obs_0"](%self)                  (a quantx.FakeQuantize)
//   %x.obs = prim::CallMethod[name="forward"](%f0, %x, %t)         (observes only when training)
//   %wq = quantx::qat_fold_weight(%conv1_weight, %bn1_weight, %bn1_running_var, eps, 8, 1, 1,
//                                 %bn_training)   (training: divided back by the scale factor)
//   %y0 = aten::conv2d(%x.obs, %wq, None, ...)
//   %y  = quantx::qat_bn_output(%y0, %conv1_bias, %bn1_weight, %bn1_bias, %bn1_running_mean,
//                               %bn1_running_var, eps, momentum, %bn_training)
//   %z  = aten::relu(%y);  %z.obs = prim::CallMethod[name="forward"](%f1, %z, %t)
//   %wq2 = quantx::fake_quantize_weight(%fc_weight, 8, 1, 1);  aten::linear(%.., %wq2, %fc_bias)
// %bn_training is `training and not _tqx_bn_frozen`: in eval mode (or after freeze_bn_stats) the
// BatchNorm is applied as the folded bias, so eval() computes what convert will produce.
//
// qat_to_prepared turns an eval-mode QAT module back into a prepared module (weights folded
// into constants with the final statistics; the fake-quantizers answer the observer interface),
// which the ordinary convert pass lowers.
#pragma once

#include <torch/csrc/jit/api/module.h>

#include <string>

#include "passes/qconfig.h"

namespace tqx::passes {

// Marks a QAT module; its value lists the parameter and buffer attributes prepare_qat added.
constexpr const char* kQatAttr = "_tqx_qat";
// Bool attribute: BatchNorm statistics frozen (freeze_bn_stats).
constexpr const char* kBnFrozenAttr = "_tqx_bn_frozen";

// A trainable QAT copy of `model` (which must be in training mode). `report`, when given, gets
// one line per conv/linear: what it trains and how its weight is fake-quantized.
torch::jit::Module prepare_qat(const torch::jit::Module& model, const QConfig& qconfig, std::string* report = nullptr);

// LSQ (learnable=True): each fake-quantizer's scale and zero point become parameters of `qat`
// (`_tqx_lsq_scale_<i>`, `_tqx_lsq_zero_point_<i>`, one element each), set from the observed
// range on the first training batch and then trained:
//   %x.obs = prim::CallMethod[name="forward_learnable"](%f0, %x, %t, %_tqx_lsq_scale_0, %_tqx_lsq_zero_point_0)
// qat_to_prepared hands the learned values to the fake-quantizers, which convert then reads.
void make_learnable(torch::jit::Module& qat);

// Rewrites a QAT module (eval mode; callers pass a clone) into the prepared form convert takes.
void qat_to_prepared(torch::jit::Module& module);

}  // namespace tqx::passes
