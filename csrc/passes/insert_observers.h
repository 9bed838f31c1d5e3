// Annotate + insert observers: decides from the op registry which activations run in int8 and
// observes each such value once, right after it is produced.
//
// Before:  %y = aten::conv2d(%x, %w, %b, ...)
//          %z = aten::relu(%y)
// After:   %o0 = prim::GetAttr[name="_tqx_obs_0"](%self)
//          %x.obs = prim::CallMethod[name="forward"](%o0, %x)      (x feeds an int8 kernel)
//          %y = aten::conv2d(%x.obs, %w, %b, ...)
//          %z = aten::relu(%y)                                     (relu fuses into the conv:
//          %o1 = prim::GetAttr[name="_tqx_obs_1"](%self)            only its output is observed)
//          %z.obs = prim::CallMethod[name="forward"](%o1, %z)
// Values that only pass through same-qparams ops (pooling, reshapes) are not observed again.
#pragma once

#include <torch/csrc/jit/api/module.h>

#include "passes/qconfig.h"

namespace tqx::passes {

// Adds observer attributes to `module` (a canonicalized module) and calls to them in forward.
// Returns the number of observers inserted.
int64_t insert_observers(torch::jit::Module& module, const QConfig& qconfig);

}  // namespace tqx::passes
