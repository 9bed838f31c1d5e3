// Clipping-range search over one Histogram (minmax, percentile, entropy, MSE, auto) and the
// histogram's estimates of quantization error.
#include "kernels/range_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace tqx::kernels {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Candidate resolution of the searches: the histogram's bins, but never coarser than this.
constexpr int64_t kMinCandidates = 256;
// Entropy treats grids with more levels than this as unclippable (the search would need more
// bins than levels and clipping never pays at that resolution): it returns the observed range.
constexpr int64_t kMaxEntropyLevels = 1 << 16;

// floor() for |y| < 2^63 without a libm call (the kernels build for baseline x86-64).
inline double fast_floor(double y) {
  const double t = static_cast<double>(static_cast<int64_t>(y));
  return t > y ? t - 1.0 : t;
}

// Note [Histogram density]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// Every estimate here reads the histogram as a piecewise-uniform density: bin k's count is spread
// evenly over its edges clamped to the exact observed [min, max]; a bin the clamp shrinks to a
// point is a point mass there. The clamp matters at the ends (the first and last bins are only
// partly covered by data) and makes an all-equal tensor one exact point.
struct Moments {
  double m0 = 0.0;  // mass
  double m1 = 0.0;  // sum of x
  double m2 = 0.0;  // sum of x^2
};

class Density {
 public:
  // With heavy_fraction > 0, spikes (bins holding at least that fraction of the mass and four
  // times more than either neighbour; the 16 largest) are kept out of the prefix moments
  // (below(), all()) and listed in heavy() instead.
  explicit Density(const Histogram& h, double heavy_fraction = 0.0)
      : min_(h.min()), max_(h.max()), lo_(h.lo()), width_(h.width()), n_(h.bins()), counts_(&h.counts()) {
    const auto& c = h.counts();
    a_.resize(n_);
    b_.resize(n_);
    for (int64_t k = 0; k < n_; ++k) {
      const double edge = lo_ + width_ * static_cast<double>(k);
      a_[k] = std::clamp(edge, min_, max_);
      b_[k] = std::clamp(edge + width_, min_, max_);
      total_ += c[k];
    }
    std::vector<double> light(c);
    if (heavy_fraction > 0.0) {
      for (int64_t k = 0; k < n_; ++k) {
        const double next = std::max(k > 0 ? c[k - 1] : 0.0, k + 1 < n_ ? c[k + 1] : 0.0);
        if (c[k] > 0.0 && c[k] >= heavy_fraction * total_ && c[k] >= 4.0 * next) heavy_.push_back(k);
      }
      std::stable_sort(heavy_.begin(), heavy_.end(), [&](int64_t x, int64_t y) { return c[x] > c[y]; });
      if (heavy_.size() > 16) heavy_.resize(16);
      for (int64_t k : heavy_) light[k] = 0.0;
    }
    p0_.assign(n_ + 1, 0.0);
    p1_.assign(n_ + 1, 0.0);
    p2_.assign(n_ + 1, 0.0);
    for (int64_t k = 0; k < n_; ++k) {
      p0_[k + 1] = p0_[k] + light[k];
      p1_[k + 1] = p1_[k] + light[k] * 0.5 * (a_[k] + b_[k]);
      p2_[k + 1] = p2_[k] + light[k] * (a_[k] * a_[k] + a_[k] * b_[k] + b_[k] * b_[k]) / 3.0;
    }
  }

  int64_t bins() const { return n_; }
  double min() const { return min_; }
  double max() const { return max_; }
  double total() const { return total_; }
  double count(int64_t k) const { return (*counts_)[k]; }
  const std::vector<int64_t>& heavy() const { return heavy_; }
  double a(int64_t k) const { return a_[k]; }
  double b(int64_t k) const { return b_[k]; }
  Moments all() const { return {p0_[n_], p1_[n_], p2_[n_]}; }

  // Moments of the mass strictly below t (heavy bins left out).
  Moments below(double t) const {
    if (t <= min_) return {};
    if (t > max_) return all();
    // For min < t <= max, bins before k end at or below t and bins after k start at or above it.
    const int64_t k = std::clamp<int64_t>(static_cast<int64_t>((t - lo_) / width_), 0, n_ - 1);
    Moments m{p0_[k], p1_[k], p2_[k]};
    const double a = a_[k], b = b_[k], c = p0_[k + 1] - p0_[k];
    if (c == 0.0 || t <= a) return m;
    if (t >= b) {
      m.m0 += c;
      m.m1 += c * 0.5 * (a + b);
      m.m2 += c * (a * a + a * b + b * b) / 3.0;
      return m;
    }
    const double f = c * (t - a) / (b - a);
    m.m0 += f;
    m.m1 += f * 0.5 * (a + t);
    m.m2 += f * (a * a + a * t + t * t) / 3.0;
    return m;
  }

  // The value below which `fraction` of the mass lies.
  double quantile(double fraction) const {
    const double target = std::clamp(fraction, 0.0, 1.0) * total();
    if (target <= 0.0) return min_;
    const auto it = std::lower_bound(p0_.begin() + 1, p0_.end(), target);
    if (it == p0_.end()) return max_;
    const int64_t k = (it - p0_.begin()) - 1;
    const double inside = (target - p0_[k]) / count(k);
    return std::clamp(a_[k] + (b_[k] - a_[k]) * inside, min_, max_);
  }

  // The mass as a histogram of magnitudes: n bins over [0, extent]. side +1: values >= 0;
  // side -1: values < 0, mirrored; side 0: all values, folded.
  std::vector<double> magnitudes(int side, int64_t n, double extent) const {
    std::vector<double> out(static_cast<size_t>(n), 0.0);
    const double w = extent / static_cast<double>(n);
    auto cell_of = [&](double x) {
      return std::clamp<int64_t>(static_cast<int64_t>(x / w), 0, n - 1);  // x >= 0
    };
    auto spread = [&](double u, double v, double mass) {
      if (mass <= 0.0) return;
      const int64_t c0 = cell_of(u), c1 = cell_of(v);
      if (c0 == c1 || !(v > u)) {
        out[static_cast<size_t>(c0)] += mass;
        return;
      }
      const double per = mass / (v - u);
      out[static_cast<size_t>(c0)] += per * std::max(static_cast<double>(c0 + 1) * w - u, 0.0);
      for (int64_t c = c0 + 1; c < c1; ++c) out[static_cast<size_t>(c)] += per * w;
      out[static_cast<size_t>(c1)] += per * std::max(v - static_cast<double>(c1) * w, 0.0);
    };
    for (int64_t k = 0; k < n_; ++k) {
      const double c = count(k);
      if (c == 0.0) continue;
      const double a = a_[k], b = b_[k];
      if (!(b > a)) {  // point mass
        if (a >= 0.0 && side >= 0) spread(a, a, c);
        if (a < 0.0 && side <= 0) spread(-a, -a, c);
        continue;
      }
      const double density = c / (b - a);
      if (side >= 0 && b > 0.0) {
        const double u = std::max(a, 0.0);
        spread(u, b, density * (b - u));
      }
      if (side <= 0 && a < 0.0) {
        const double v = std::min(b, 0.0);
        spread(-v, -a, density * (v - a));
      }
    }
    return out;
  }

 private:
  double min_, max_, lo_, width_;
  int64_t n_;
  const std::vector<double>* counts_;
  double total_ = 0.0;
  std::vector<int64_t> heavy_;
  std::vector<double> a_, b_;         // clamped bin extents
  std::vector<double> p0_, p1_, p2_;  // prefix moments over bins [0, k)
};

int64_t candidates_for(const Density& d) { return std::max(d.bins(), kMinCandidates); }

// ∫_0^x e(t)^2 dt for the rounding error e(t) = t - s * round(t / s) (period s, zero at the grid).
double cumulative_sq_rounding(double x, double s) {
  const double m = fast_floor(x / s + 0.5);
  const double r = x - m * s;
  const double s3 = s * s * s;
  return m * s3 / 12.0 + (r * r * r + s3 / 8.0) / 3.0 - s3 / 24.0;
}

// Squared error of mass c spread evenly over [a, b] (a point when a == b) on the grid of the
// multiples of s within [L, H], values outside clipped to L or H.
double bin_sq_error(double a, double b, double c, double s, double L, double H) {
  if (!(b > a)) {
    const double e = a < L ? L - a : a > H ? a - H : a - s * std::nearbyint(a / s);
    return c * e * e;
  }
  double part = 0.0;
  if (a < L) {
    const double v = std::min(b, L);
    part += ((L - a) * (L - a) * (L - a) - (L - v) * (L - v) * (L - v)) / 3.0;
  }
  if (b > H) {
    const double u = std::max(a, H);
    part += ((b - H) * (b - H) * (b - H) - (u - H) * (u - H) * (u - H)) / 3.0;
  }
  const double u = std::max(a, L), v = std::min(b, H);
  if (v > u) part += cumulative_sq_rounding(v, s) - cumulative_sq_rounding(u, s);
  return c * std::max(part, 0.0) / (b - a);
}

double expected_sq_error(const Density& d, double s, int64_t zp, int64_t qmin, int64_t qmax) {
  if (d.total() <= 0.0) return kNaN;
  // Grid points (q - zp) * s are the multiples of s in [L, H]; Note [Rounding] rounds to nearest.
  const double L = static_cast<double>(qmin - zp) * s;
  const double H = static_cast<double>(qmax - zp) * s;
  double err = 0.0;
  for (int64_t k = 0; k < d.bins(); ++k) {
    const double c = d.count(k);
    if (c != 0.0) err += bin_sq_error(d.a(k), d.b(k), c, s, L, H);
  }
  return err / d.total();
}

double mean_square(const Density& d) { return d.total() > 0.0 ? d.all().m2 / d.total() : kNaN; }

double sqnr_db(const Density& d, double s, int64_t zp, int64_t qmin, int64_t qmax) {
  if (d.total() <= 0.0) return kNaN;
  const double err = expected_sq_error(d, s, zp, qmin, qmax);
  if (err <= 0.0) return kInf;
  return 10.0 * std::log10(mean_square(d) / err);
}

double range_sqnr_db(const Density& d, const QuantGrid& g, double lo, double hi) {
  const QParams p = choose_qparams(static_cast<float>(lo), static_cast<float>(hi), g.qmin, g.qmax, g.symmetric, g.eps);
  return sqnr_db(d, p.scale, p.zero_point, g.qmin, g.qmax);
}

// [-t, t] within the observed range; data entirely beyond t on one side gives [t, t] (or
// [-t, -t]), so lo <= hi always holds.
ClipRange within_threshold(const Density& d, double t, RangeMethod method) {
  double lo = std::max(d.min(), -t), hi = std::min(d.max(), t);
  if (lo > hi) {
    if (d.min() > 0.0) lo = hi;
    else hi = lo;
  }
  return {lo, hi, method};
}

// ---- minmax, percentile ------------------------------------------------------------------------

ClipRange minmax(const Density& d) { return {d.min(), d.max(), RangeMethod::kMinMax}; }

// Quantile of the magnitudes (symmetric ranges).
double magnitude_quantile(const Density& d, double fraction) {
  const double extent = std::max(std::fabs(d.min()), std::fabs(d.max()));
  if (extent == 0.0) return 0.0;
  const int64_t n = candidates_for(d);
  const std::vector<double> h = d.magnitudes(0, n, extent);
  const double target = std::clamp(fraction, 0.0, 1.0) * d.total();
  double seen = 0.0;
  const double w = extent / static_cast<double>(n);
  for (int64_t k = 0; k < n; ++k) {
    if (h[k] > 0.0 && seen + h[k] >= target) return std::min(w * (static_cast<double>(k) + (target - seen) / h[k]), extent);
    seen += h[k];
  }
  return extent;
}

ClipRange percentile(const Density& d, const QuantGrid& g, double pct) {
  const double keep = pct / 100.0;
  ClipRange r{d.min(), d.max(), RangeMethod::kPercentile};
  if (g.symmetric) {
    r = within_threshold(d, magnitude_quantile(d, keep), RangeMethod::kPercentile);
  } else if (d.min() >= 0.0) {
    r.hi = d.quantile(keep);  // one tail to clip: it gets all of 1 - keep
  } else if (d.max() <= 0.0) {
    r.lo = d.quantile(1.0 - keep);
  } else {
    r.lo = d.quantile(0.5 * (1.0 - keep));
    r.hi = d.quantile(1.0 - 0.5 * (1.0 - keep));
  }
  return r;
}

// ---- entropy -----------------------------------------------------------------------------------

// Below this many levels a side is not clipped: with few groups, TensorRT's divergence is
// smallest where nothing is merged (threshold = `levels` bins), whatever the data.
constexpr int64_t kMinEntropyLevels = 16;

// The threshold entropy_threshold_bins picks on the magnitudes of `side`, which span [0, extent].
// The magnitude histogram has at least 16 bins per level, so the smallest threshold tried is at
// most 1/16 of the extent, as TensorRT's 2048 bins for 128 levels.
double entropy_threshold(const Density& d, int side, double extent, int64_t levels) {
  if (extent <= 0.0) return 0.0;
  const int64_t n = std::max(d.bins(), 16 * levels);
  const std::vector<double> h = d.magnitudes(side, n, extent);
  const int64_t i = entropy_threshold_bins(h.data(), n, levels);
  return i == n ? extent : extent * static_cast<double>(i) / static_cast<double>(n);
}

ClipRange entropy(const Density& d, const QuantGrid& g) {
  ClipRange r{d.min(), d.max(), RangeMethod::kEntropy};
  const int64_t levels = g.qmax - g.qmin + 1;
  if (levels > kMaxEntropyLevels) return r;
  const double extent = std::max(std::fabs(d.min()), std::fabs(d.max()));
  if (g.symmetric || d.min() >= 0.0 || d.max() <= 0.0) {
    // TensorRT's own case: one threshold on |x|. A symmetric grid has half of its levels on each
    // side of 0; one-signed data (ReLU outputs) on an asymmetric grid gets all of them.
    const int64_t used = g.symmetric ? levels / 2 : levels;
    if (used < kMinEntropyLevels) return r;
    return within_threshold(d, entropy_threshold(d, 0, extent, used), RangeMethod::kEntropy);
  }
  // Signed data on an asymmetric grid: two TensorRT searches, one per side, sharing the levels in
  // proportion to the part of the range each side's threshold takes. They start from each side
  // searched with all the levels and iterate to a fixed point (at most 8 rounds); a side left
  // with fewer than kMinEntropyLevels keeps its observed end.
  const double pos = d.max(), neg = -d.min();
  double tp = entropy_threshold(d, +1, pos, levels);
  double tn = entropy_threshold(d, -1, neg, levels);
  int64_t prev = -1;
  for (int round = 0; round < 8; ++round) {
    const int64_t lp = std::llround(static_cast<double>(levels) * tp / (tp + tn));
    if (lp == prev) break;
    prev = lp;
    tp = lp >= kMinEntropyLevels ? entropy_threshold(d, +1, pos, lp) : pos;
    tn = levels - lp >= kMinEntropyLevels ? entropy_threshold(d, -1, neg, levels - lp) : neg;
  }
  r.lo = std::max(d.min(), -tn);
  r.hi = std::min(d.max(), tp);
  return r;
}

// ---- mse ---------------------------------------------------------------------------------------

// Bins with at least this fraction of the mass get the exact rounding error in the MSE model.
constexpr double kHeavyBinFraction = 0.01;

// The objective kMse minimises, O(1) per range after O(bins) set-up: clipping error exactly (prefix
// moments), rounding error as step^2 / 12 per value inside the grid, except for the mass of heavy
// bins (ReLU's zeros, clamp limits, constant tensors), whose exact error depends on where the grid
// points fall and is computed exactly. Grid as choose_qparams builds it, but without rounding the
// asymmetric zero point.
class MseModel {
 public:
  MseModel(const Histogram& h, const QuantGrid& g) : d_(h, kHeavyBinFraction), all_(d_.all()) {
    steps_ = static_cast<double>(g.qmax - g.qmin);
    symmetric_ = g.symmetric;
    if (symmetric_) {
      const int64_t zp = choose_qparams(-1.0f, 1.0f, g.qmin, g.qmax, true, g.eps).zero_point;
      lo_steps_ = static_cast<double>(g.qmin - zp);
      hi_steps_ = static_cast<double>(g.qmax - zp);
    }
  }

  const Density& density() const { return d_; }

  double operator()(double lo, double hi) const {
    double L, H, s;
    if (symmetric_) {
      s = std::max(-std::min(lo, 0.0), std::max(hi, 0.0)) / (0.5 * steps_);
      L = lo_steps_ * s;
      H = hi_steps_ * s;
    } else {
      L = std::min(lo, 0.0);
      H = std::max(hi, 0.0);
      s = (H - L) / steps_;
    }
    const Moments bl = d_.below(L);
    const Moments bh = d_.below(H);
    const Moments ab{all_.m0 - bh.m0, all_.m1 - bh.m1, all_.m2 - bh.m2};
    const double clip_lo = std::max(bl.m2 - 2.0 * L * bl.m1 + L * L * bl.m0, 0.0);
    const double clip_hi = std::max(ab.m2 - 2.0 * H * ab.m1 + H * H * ab.m0, 0.0);
    const double inside = std::max(bh.m0 - bl.m0, 0.0);
    double err = clip_lo + clip_hi + s * s / 12.0 * inside;
    for (int64_t k : d_.heavy()) {
      err += s > 0.0 ? bin_sq_error(d_.a(k), d_.b(k), d_.count(k), s, L, H)
                     : bin_sq_error(d_.a(k), d_.b(k), d_.count(k), 1.0, 0.0, 0.0);
    }
    return err / d_.total();
  }

 private:
  Density d_;
  Moments all_;
  double steps_ = 0.0;
  bool symmetric_ = false;
  double lo_steps_ = 0.0, hi_steps_ = 0.0;
};

double exact_error(const Density& d, const QuantGrid& g, double lo, double hi) {
  const QParams p = choose_qparams(static_cast<float>(lo), static_cast<float>(hi), g.qmin, g.qmax, g.symmetric, g.eps);
  return expected_sq_error(d, p.scale, p.zero_point, g.qmin, g.qmax);
}

// Candidate clipping ranges on a lattice: end j of the low side is L0 * j / n, end k of the high
// side H0 * k / n (a symmetric grid uses k only, as the threshold). Index n is the observed end.
struct Lattice {
  double L0, H0;
  int64_t n, jmax, kmax;
  double lo(int64_t j) const { return j == n ? L0 : L0 * static_cast<double>(j) / static_cast<double>(n); }
  double hi(int64_t k) const { return k == n ? H0 : H0 * static_cast<double>(k) / static_cast<double>(n); }
};

// Pattern search on the exact estimate from (j, k): steps of n/32 halving to 1, moving to the best
// of the four neighbours while that improves (at most 64 moves).
void refine_exact(const Density& d, const QuantGrid& g, const Lattice& lat, int64_t* j, int64_t* k) {
  auto err = [&](int64_t jj, int64_t kk) { return exact_error(d, g, lat.lo(jj), lat.hi(kk)); };
  double best = err(*j, *k);
  int moves = 0;
  for (int64_t step = std::max<int64_t>(lat.n / 32, 1); step >= 1 && moves < 64; step /= 2) {
    for (bool moved = true; moved && moves < 64;) {
      moved = false;
      int64_t nj = *j, nk = *k;
      const int64_t tries[4][2] = {{0, step}, {0, -step}, {step, 0}, {-step, 0}};
      for (const auto& t : tries) {
        const int64_t cj = *j + t[0], ck = *k + t[1];
        if (cj < 0 || cj > lat.jmax || ck < 0 || ck > lat.kmax || (t[0] != 0 && lat.jmax == 0)) continue;
        const double e = err(cj, ck);
        if (e < best) best = e, nj = cj, nk = ck, moved = true;
      }
      *j = nj;
      *k = nk;
      moves += moved ? 1 : 0;
    }
  }
}

// Two stages: the O(1) model (MseModel) searched over the whole lattice finds the basin, then a
// pattern search on the exact estimate (Note [Histogram density], true grid with its rounded
// zero point) finishes; the observed range is kept if neither beats it.
ClipRange mse(const Histogram& h, const QuantGrid& g) {
  const MseModel f(h, g);
  const Density& d = f.density();
  const int64_t n = candidates_for(d);
  Lattice lat{std::min(d.min(), 0.0), std::max(d.max(), 0.0), n, 0, 0};
  int64_t bj = 0, bk = 0;
  if (g.symmetric) {
    const double extent = std::max(std::fabs(d.min()), std::fabs(d.max()));
    if (extent == 0.0) return {d.min(), d.max(), RangeMethod::kMse};
    lat = {-extent, extent, n, 0, n};
    bk = n;
    double best_err = f(-extent, extent);
    for (int64_t k = n - 1; k >= 1; --k) {
      const double e = f(lat.lo(k), lat.hi(k));
      if (e < best_err) best_err = e, bk = k;
    }
  } else {
    lat.jmax = lat.L0 < 0.0 ? n : 0;
    lat.kmax = lat.H0 > 0.0 ? n : 0;
    bj = lat.jmax;
    bk = lat.kmax;
    double best_err = f(lat.lo(bj), lat.hi(bk));
    auto consider = [&](int64_t j, int64_t k) {
      const double e = f(lat.lo(j), lat.hi(k));
      if (e < best_err) best_err = e, bj = j, bk = k;
    };
    // A coarse 2-D grid, then coordinate descent at full resolution: each round scans every
    // candidate of one end with the other fixed, until neither end moves.
    const int64_t coarse = 32;
    for (int64_t cj = lat.jmax ? coarse : 0; cj >= 0; --cj) {
      for (int64_t ck = lat.kmax ? coarse : 0; ck >= 0; --ck) consider(lat.jmax * cj / coarse, lat.kmax * ck / coarse);
    }
    for (int round = 0; round < 16; ++round) {
      const int64_t j0 = bj, k0 = bk;
      for (int64_t k = lat.kmax; k >= 0; --k) consider(bj, k);
      for (int64_t j = lat.jmax; j >= 0; --j) consider(j, bk);
      if (bj == j0 && bk == k0) break;
    }
  }
  refine_exact(d, g, lat, &bj, &bk);
  ClipRange r;
  if (g.symmetric) {
    r = within_threshold(d, lat.hi(bk), RangeMethod::kMse);
  } else {
    // One-signed data: the grid reaches 0 anyway; report the observed end there.
    r = {d.min() > 0.0 ? d.min() : lat.lo(bj), d.max() < 0.0 ? d.max() : lat.hi(bk), RangeMethod::kMse};
  }
  if (exact_error(d, g, r.lo, r.hi) >= exact_error(d, g, d.min(), d.max())) r = {d.min(), d.max(), RangeMethod::kMse};
  return r;
}

ClipRange choose(const Histogram& h, const Density& d, const QuantGrid& g, RangeMethod method, double pct) {
  switch (method) {
    case RangeMethod::kMinMax: return minmax(d);
    case RangeMethod::kPercentile: return percentile(d, g, pct);
    case RangeMethod::kEntropy: return entropy(d, g);
    case RangeMethod::kMse: return mse(h, g);
    case RangeMethod::kAuto: {
      // Ties keep the earlier candidate, so a distribution no clipping helps stays at minmax.
      ClipRange best = minmax(d);
      double best_db = range_sqnr_db(d, g, best.lo, best.hi);
      for (RangeMethod m : {RangeMethod::kPercentile, RangeMethod::kEntropy, RangeMethod::kMse}) {
        const ClipRange c = choose(h, d, g, m, pct);
        const double db = range_sqnr_db(d, g, c.lo, c.hi);
        if (db > best_db) best = c, best_db = db;
      }
      return best;
    }
  }
  throw std::invalid_argument("choose_range: unknown method " + std::to_string(static_cast<int>(method)));
}

}  // namespace

const char* range_method_name(RangeMethod method) {
  switch (method) {
    case RangeMethod::kMinMax: return "minmax";
    case RangeMethod::kPercentile: return "percentile";
    case RangeMethod::kEntropy: return "entropy";
    case RangeMethod::kMse: return "mse";
    case RangeMethod::kAuto: return "auto";
  }
  return "unknown";
}

const char* range_method_names() { return "minmax, percentile, entropy, mse, auto"; }

bool parse_range_method(const std::string& name, RangeMethod* out) {
  for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kEntropy, RangeMethod::kMse,
                        RangeMethod::kAuto}) {
    if (name == range_method_name(m)) {
      *out = m;
      return true;
    }
  }
  return false;
}

ClipRange choose_range(const Histogram& h, const QuantGrid& grid, RangeMethod method, double percentile) {
  if (!(percentile > 0.0 && percentile <= 100.0)) {
    throw std::invalid_argument("choose_range: percentile should be in (0, 100], got " + std::to_string(percentile));
  }
  if (h.empty() || grid.qmax <= grid.qmin) {
    return {h.min(), h.max(), method == RangeMethod::kAuto ? RangeMethod::kMinMax : method};
  }
  const Density d(h);
  return choose(h, d, grid, method, percentile);
}

double expected_sq_error(const Histogram& h, double scale, int64_t zero_point, int64_t qmin, int64_t qmax) {
  if (h.empty()) return kNaN;
  return expected_sq_error(Density(h), scale, zero_point, qmin, qmax);
}

double mean_square(const Histogram& h) { return h.empty() ? kNaN : mean_square(Density(h)); }

double sqnr_db(const Histogram& h, double scale, int64_t zero_point, int64_t qmin, int64_t qmax) {
  if (h.empty()) return kNaN;
  return sqnr_db(Density(h), scale, zero_point, qmin, qmax);
}

double range_sqnr_db(const Histogram& h, const QuantGrid& grid, double lo, double hi) {
  if (h.empty()) return kNaN;
  return range_sqnr_db(Density(h), grid, lo, hi);
}

double mse_objective(const Histogram& h, const QuantGrid& grid, double lo, double hi) {
  if (h.empty() || grid.qmax <= grid.qmin) return kNaN;
  return MseModel(h, grid)(lo, hi);
}

int64_t entropy_threshold_bins(const double* counts, int64_t n, int64_t levels) {
  if (levels < 1) throw std::invalid_argument("entropy_threshold_bins: levels should be >= 1, got " + std::to_string(levels));
  if (n <= levels) return n;
  // Prefix sums over bins [0, k): mass H, non-zero bins NZ, sum of h log h PL.
  std::vector<double> H(n + 1, 0.0), PL(n + 1, 0.0);
  std::vector<int64_t> NZ(n + 1, 0);
  for (int64_t k = 0; k < n; ++k) {
    const double c = counts[k];
    H[k + 1] = H[k] + c;
    NZ[k + 1] = NZ[k] + (c > 0.0 ? 1 : 0);
    PL[k + 1] = PL[k] + (c > 0.0 ? c * std::log(c) : 0.0);
  }
  const double total = H[n];
  if (!(total > 0.0)) return n;
  // With p = P / total and q = Q / S (S = H[i]):
  //   KL = (sum P log P - sum_groups P_g log(Q_g / n_g)) / total - log total + log S.
  // Groups 0 .. levels-2 are [g m, (g+1) m) with m = i / levels and P_g = Q_g: their term is the
  // same for every i with the same m, so it is computed once per m.
  int64_t best_i = n;
  double best_kl = kInf;
  int64_t m_cached = -1;
  double groups_term = 0.0;
  for (int64_t i = levels; i <= n; ++i) {
    const int64_t m = i / levels;
    if (m != m_cached) {
      m_cached = m;
      groups_term = 0.0;
      for (int64_t g = 0; g + 1 < levels; ++g) {
        const double q = H[(g + 1) * m] - H[g * m];
        if (q > 0.0) groups_term += q * std::log(q / static_cast<double>(NZ[(g + 1) * m] - NZ[g * m]));
      }
    }
    const double kept = H[i];
    if (!(kept > 0.0)) continue;
    const int64_t start = (levels - 1) * m;
    const double clipped = total - kept;
    const double last_bin = counts[i - 1] + clipped;
    const double q_last = kept - H[start];
    const double p_last = total - H[start];
    const int64_t nz_last = NZ[i] - NZ[start] + (counts[i - 1] <= 0.0 && clipped > 0.0 ? 1 : 0);
    double last_term = 0.0;
    if (p_last > 0.0) {
      if (!(q_last > 0.0)) continue;  // P > 0 where Q = 0: infinite divergence
      last_term = p_last * std::log(q_last / static_cast<double>(nz_last));
    }
    const double plogp = PL[i - 1] + (last_bin > 0.0 ? last_bin * std::log(last_bin) : 0.0);
    const double kl = (plogp - groups_term - last_term) / total - std::log(total) + std::log(kept);
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return best_i;
}

}  // namespace tqx::kernels
