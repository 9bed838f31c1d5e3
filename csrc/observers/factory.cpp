// Dispatch from an ObserverSpec to the observer family that builds it.
#include "observers/factory.h"

#include <c10/util/Exception.h>

namespace tqx::observers {

c10::IValue make_observer(const ObserverSpec& spec) {
  if (spec.kind == "histogram") return make_histogram_observer(spec);
  if (spec.kind == "minmax" || spec.kind == "moving_average_minmax" || spec.kind == "per_channel_minmax") {
    TORCH_CHECK(spec.method == "minmax", "observer kind '", spec.kind, "' sets its range from min/max only; method '",
                spec.method, "' needs kind 'histogram'");
    return make_minmax_observer(spec);
  }
  TORCH_CHECK(false, "observer kind should be one of histogram, minmax, moving_average_minmax, "
              "per_channel_minmax, got '", spec.kind, "'");
}

}  // namespace tqx::observers
