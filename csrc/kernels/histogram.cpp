// Histogram with exact power-of-two re-binning; binning itself runs on the reduce kernels.
#include "kernels/histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/reduce.h"

namespace tqx::kernels {
namespace {

constexpr int64_t kChunk = 4096;

// A starting bin width for data whose range is a single point.
double initial_width(double lo, double hi, int64_t bins) {
  const double span = hi - lo;
  if (span > 0.0) return span / static_cast<double>(bins);
  const double mag = std::max(std::fabs(lo), 1.0);
  return mag * std::ldexp(1.0, -20) / static_cast<double>(bins);
}

}  // namespace

Histogram::Histogram(int64_t bins) {
  if (bins < 1 || bins > (1 << 24)) {
    throw std::invalid_argument("Histogram: bins should be in [1, 16777216], got " +
                                std::to_string(bins));
  }
  counts_.assign(static_cast<size_t>(bins), 0.0);
  reset();
}

void Histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0.0);
  lo_ = 0.0;
  width_ = 0.0;
  total_ = 0.0;
  min_ = std::numeric_limits<float>::infinity();
  max_ = -std::numeric_limits<float>::infinity();
  nonfinite_ = 0;
}

void Histogram::grow_to_cover(double a, double b) {
  if (total_ == 0.0 && width_ == 0.0) {
    lo_ = a;
    width_ = initial_width(a, b, bins());
    return;
  }
  const double top = hi();
  if (a >= lo_ && b <= top) return;
  const double nb = static_cast<double>(bins());
  // Old-width bins to add below and above.
  const double below = a < lo_ ? std::ceil((lo_ - a) / width_) : 0.0;
  const double above = b > top ? std::ceil((b - top) / width_) : 0.0;
  const double needed = below + nb + above;
  int k = 1;
  while (std::ldexp(nb, k) < needed) ++k;
  const double factor = std::ldexp(1.0, k);
  std::vector<double> grown(counts_.size(), 0.0);
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] == 0.0) continue;
    const double j = std::floor((static_cast<double>(i) + below) / factor);
    grown[static_cast<size_t>(std::min(j, nb - 1.0))] += counts_[i];
  }
  counts_.swap(grown);
  lo_ -= below * width_;
  width_ *= factor;
}

void Histogram::add_finite(const float* x, int64_t n) {
  const ReduceKernels& k = reduce_kernels();
  const int32_t nbins = static_cast<int32_t>(bins());
  const float lo = static_cast<float>(lo_);
  const float inv_width = static_cast<float>(1.0 / width_);
  // Four interleaved sub-histograms break the store-to-load dependency on repeated bins.
  std::vector<uint32_t> sub(static_cast<size_t>(nbins) * 4, 0);
  int32_t idx[kChunk];
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t len = std::min(kChunk, n - start);
    k.f32_bin_index(len, x + start, lo, inv_width, nbins, idx);
    int64_t i = 0;
    for (; i + 4 <= len; i += 4) {
      ++sub[idx[i]];
      ++sub[nbins + idx[i + 1]];
      ++sub[2 * nbins + idx[i + 2]];
      ++sub[3 * nbins + idx[i + 3]];
    }
    for (; i < len; ++i) ++sub[idx[i]];
    // uint32 cannot overflow within one chunk-bounded flush cycle below.
    if ((start / kChunk) % 256 == 255 || start + kChunk >= n) {
      for (int32_t b = 0; b < nbins; ++b) {
        const uint64_t c = uint64_t(sub[b]) + sub[nbins + b] + sub[2 * nbins + b] + sub[3 * nbins + b];
        counts_[b] += static_cast<double>(c);
      }
      std::fill(sub.begin(), sub.end(), 0u);
    }
  }
  total_ += static_cast<double>(n);
}

void Histogram::observe(const float* x, int64_t n) {
  if (n <= 0) return;
  float mn, mx;
  const bool nonfinite = reduce_kernels().f32_minmax(n, x, &mn, &mx);
  if (nonfinite) {
    // Rare path: copy the finite values out, then proceed as usual.
    std::vector<float> finite;
    finite.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (std::isfinite(x[i])) finite.push_back(x[i]);
    }
    nonfinite_ += n - static_cast<int64_t>(finite.size());
    if (finite.empty()) return;
    reduce_kernels().f32_minmax(static_cast<int64_t>(finite.size()), finite.data(), &mn, &mx);
    grow_to_cover(mn, mx);
    min_ = std::min(min_, mn);
    max_ = std::max(max_, mx);
    add_finite(finite.data(), static_cast<int64_t>(finite.size()));
    return;
  }
  grow_to_cover(mn, mx);
  min_ = std::min(min_, mn);
  max_ = std::max(max_, mx);
  add_finite(x, n);
}

void Histogram::merge(const Histogram& other) {
  nonfinite_ += other.nonfinite_;
  if (other.empty()) return;
  if (empty() && bins() == other.bins()) {
    const int64_t nf = nonfinite_;
    *this = other;
    nonfinite_ = nf;
    return;
  }
  grow_to_cover(other.lo(), other.hi());
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  const double nb = static_cast<double>(bins());
  for (int64_t j = 0; j < other.bins(); ++j) {
    const double c = other.counts_[static_cast<size_t>(j)];
    if (c == 0.0) continue;
    // The other bin's extent in our bin coordinates; spread its count by overlap.
    double a = (other.lo_ + other.width_ * static_cast<double>(j) - lo_) / width_;
    double b = a + other.width_ / width_;
    a = std::clamp(a, 0.0, nb);
    b = std::clamp(b, 0.0, nb);
    if (b <= a) {
      counts_[static_cast<size_t>(std::min(a, nb - 1.0))] += c;
      continue;
    }
    const double per_unit = c / (b - a);
    for (double pos = a; pos < b;) {
      const double cell = std::floor(pos);
      const double next = std::min(cell + 1.0, b);
      counts_[static_cast<size_t>(std::min(cell, nb - 1.0))] += per_unit * (next - pos);
      pos = next;
    }
  }
  total_ += other.total_;
}

double Histogram::quantile(double fraction) const {
  if (empty()) return std::numeric_limits<double>::quiet_NaN();
  fraction = std::clamp(fraction, 0.0, 1.0);
  const double target = fraction * total_;
  double seen = 0.0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] > 0.0 && seen + counts_[i] >= target) {
      const double inside = (target - seen) / counts_[i];
      const double v = lo_ + width_ * (static_cast<double>(i) + inside);
      return std::clamp(v, static_cast<double>(min_), static_cast<double>(max_));
    }
    seen += counts_[i];
  }
  return max_;
}

std::vector<double> Histogram::header() const {
  return {lo_, width_, total_, min_, max_, static_cast<double>(nonfinite_)};
}

Histogram Histogram::from_state(const std::vector<double>& header, const std::vector<double>& counts) {
  if (header.size() != 6 || counts.empty()) {
    throw std::invalid_argument("Histogram: malformed saved state (header of " +
                                std::to_string(header.size()) + " values, " +
                                std::to_string(counts.size()) + " bins)");
  }
  Histogram h(static_cast<int64_t>(counts.size()));
  h.lo_ = header[0];
  h.width_ = header[1];
  h.total_ = header[2];
  h.min_ = static_cast<float>(header[3]);
  h.max_ = static_cast<float>(header[4]);
  h.nonfinite_ = static_cast<int64_t>(header[5]);
  h.counts_ = counts;
  return h;
}

}  // namespace tqx::kernels
