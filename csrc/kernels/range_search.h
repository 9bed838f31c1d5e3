// Range setting from one Histogram: the clipping range each calibration method chooses, and the
// histogram's estimate of the error (MSE, SQNR) of quantizing the observed distribution.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/histogram.h"
#include "kernels/qparams.h"

namespace tqx::kernels {

// The codes are stored in saved observer states: never renumber them.
enum class RangeMethod : int {
  kMinMax = 0,      // the exact observed [min, max]
  kPercentile = 1,  // the range holding `percentile` % of the mass
  kEntropy = 2,     // TensorRT's minimum KL divergence threshold
  kMse = 3,         // minimum expected squared error, clipping and rounding together
  kAuto = 4,        // per tensor, the best of the four above by estimated SQNR
};

constexpr double kDefaultPercentile = 99.99;

// "minmax", "percentile", "entropy", "mse", "auto".
const char* range_method_name(RangeMethod method);
// False (and *out unchanged) when `name` is none of the names above.
bool parse_range_method(const std::string& name, RangeMethod* out);
// The names, comma separated, for error messages.
const char* range_method_names();

// The integer range and scheme that choose_qparams() turns a clipping range into qparams for.
struct QuantGrid {
  int64_t qmin = 0;
  int64_t qmax = 255;
  bool symmetric = false;
  float eps = kDefaultScaleEps;
};

struct ClipRange {
  double lo;
  double hi;
  RangeMethod method;  // the method that chose the range (for kAuto, the winner)
};

// The range `method` chooses for the distribution in `h`; its qparams are
// choose_qparams(lo, hi, ...), which also widens the range to contain 0. `percentile` is in
// (0, 100] (used by kPercentile and by kAuto's percentile candidate); throws
// std::invalid_argument otherwise. An empty histogram gives the observed (+inf, -inf) for every
// method, so the qparams are choose_qparams' "nothing observed" defaults. All methods are
// deterministic and run in O(bins) (kMse: O(bins) per coordinate-descent round).
ClipRange choose_range(const Histogram& h, const QuantGrid& grid, RangeMethod method,
                       double percentile = kDefaultPercentile);

// Expected squared error per value when the histogram's distribution (Note [Histogram density]
// in range_search.cpp) is quantized with (scale, zero_point) on [qmin, qmax] and dequantized:
// rounding error inside the grid, clipping error outside it. NaN for an empty histogram.
double expected_sq_error(const Histogram& h, double scale, int64_t zero_point, int64_t qmin, int64_t qmax);
// Mean of x^2 under the same density (the signal power of SQNR).
double mean_square(const Histogram& h);
// 10 log10(mean_square / expected_sq_error) in dB; +inf when the error is 0, NaN when empty.
double sqnr_db(const Histogram& h, double scale, int64_t zero_point, int64_t qmin, int64_t qmax);
// sqnr_db of the qparams choose_qparams() gives the clipping range [lo, hi].
double range_sqnr_db(const Histogram& h, const QuantGrid& grid, double lo, double hi);

// What kMse minimises: expected squared error with rounding noise modelled as step^2 / 12 for
// every value inside the grid, and exact clipping error outside it (the grid of [lo, hi] as
// choose_qparams builds it, ignoring zero-point rounding). Exposed for tests.
double mse_objective(const Histogram& h, const QuantGrid& grid, double lo, double hi);

// TensorRT's search on a histogram of magnitudes counts[0..n) (bin 0 starts at 0): the number of
// bins i in [levels, n] to keep, i.e. the threshold i * bin_width, minimising KL(P || Q), where
// P is counts[0..i) with the clipped mass added to bin i-1, and Q is counts[0..i) merged into
// `levels` groups of i / levels bins (the last group takes the remainder) and spread back evenly
// over the bins where P is non-zero. No smoothing: a candidate where P > 0 and Q = 0 is skipped.
// Returns n when n <= levels. O(n) with prefix sums (the groups depend only on i / levels).
int64_t entropy_threshold_bins(const double* counts, int64_t n, int64_t levels);

}  // namespace tqx::kernels
