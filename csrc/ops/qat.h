// The QAT fake-quantizer object, created by the prepare_qat pass without naming its class.
#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>

namespace tqx::ops {

// A torch.classes.quantx.FakeQuantize: moving-average min/max observer + per-tensor affine
// fake-quantize (STE) over [quant_min, quant_max], in one call.
c10::IValue make_fake_quantize(int64_t quant_min, int64_t quant_max, double averaging_constant = 0.01);

}  // namespace tqx::ops
