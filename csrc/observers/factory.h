// Creating observers from C++ (the prepare pass inserts them into graphs) without naming their
// classes, which stay private to their files.
#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>

#include "observers/observer_common.h"

namespace tqx::observers {

// kind: "minmax", "moving_average_minmax", "histogram" (per tensor) or "per_channel_minmax".
struct ObserverSpec {
  std::string kind = "histogram";
  ObserverConfig config;
  int64_t axis = 0;               // per-channel kinds
  double averaging_constant = 0.01;  // moving-average kinds
  int64_t bins = 2048;            // histogram
  // histogram: the range-setting method of calculate_qparams (kernels/range_search.h) and the
  // percentile that "percentile" and "auto" use. Other kinds accept only "minmax".
  std::string method = "minmax";
  double percentile = 99.99;
};

// The observer object (a torch.classes.quantx.* instance) as an IValue; throws on unknown kinds.
c10::IValue make_observer(const ObserverSpec& spec);

// Defined next to each class.
c10::IValue make_minmax_observer(const ObserverSpec& spec);
c10::IValue make_histogram_observer(const ObserverSpec& spec);

}  // namespace tqx::observers
