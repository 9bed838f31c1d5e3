// A fixed-bin-count histogram whose range grows by exact re-binning and which can merge with
// another: the statistics behind histogram-based range setting.
#pragma once

#include <cstdint>
#include <vector>

namespace tqx::kernels {

class Histogram {
 public:
  explicit Histogram(int64_t bins = 2048);

  // Adds the finite values of x[0..n); NaN and +-Inf are counted in nonfinite() and skipped.
  void observe(const float* x, int64_t n);
  // Adds another histogram's counts (its bins are spread over ours in proportion to overlap,
  // exactly when the grids align). Grows our range to cover the other's.
  void merge(const Histogram& other);
  void reset();

  int64_t bins() const { return static_cast<int64_t>(counts_.size()); }
  bool empty() const { return total_ == 0.0; }
  double lo() const { return lo_; }
  double width() const { return width_; }
  double hi() const { return lo_ + width_ * static_cast<double>(counts_.size()); }
  const std::vector<double>& counts() const { return counts_; }
  double total() const { return total_; }
  // Exact extremes of the finite values observed (+inf / -inf when empty).
  float min() const { return min_; }
  float max() const { return max_; }
  int64_t nonfinite() const { return nonfinite_; }

  // The value below which `fraction` (in [0, 1]) of the mass lies, interpolating inside a bin.
  double quantile(double fraction) const;

  // Serialized state: {lo, width, total, min, max, nonfinite} and the counts.
  std::vector<double> header() const;
  static Histogram from_state(const std::vector<double>& header, const std::vector<double>& counts);

 private:
  // Makes [lo, hi] cover [a, b] by widening bins by a power of two; each new bin is the sum of
  // whole old bins, so no count is split.
  void grow_to_cover(double a, double b);
  void add_finite(const float* x, int64_t n);

  std::vector<double> counts_;
  double lo_ = 0.0;
  double width_ = 0.0;
  double total_ = 0.0;
  float min_;
  float max_;
  int64_t nonfinite_ = 0;
};

}  // namespace tqx::kernels
