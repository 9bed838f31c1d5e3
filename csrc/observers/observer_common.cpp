// Shared observer helpers: validation, finite min/max, qparams as tensors.
#include "observers/observer_common.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>

#include "kernels/qparams.h"
#include "kernels/reduce.h"

namespace tqx::observers {

void ObserverConfig::validate(const char* observer) const {
  TORCH_CHECK(quant_min <= quant_max, observer, ": quant_min should be <= quant_max, got quant_min=", quant_min,
              ", quant_max=", quant_max);
  TORCH_CHECK(quant_min >= std::numeric_limits<int32_t>::min() && quant_max <= std::numeric_limits<int32_t>::max(),
              observer, ": quant_min and quant_max should fit in 32 bits, got [", quant_min, ", ", quant_max, "]");
  TORCH_CHECK(std::isfinite(eps) && eps > 0.0, observer, ": eps should be a finite number > 0, got ", eps);
}

std::vector<double> ObserverConfig::to_vector() const {
  return {static_cast<double>(quant_min), static_cast<double>(quant_max), symmetric ? 1.0 : 0.0, eps,
          skip_non_float ? 1.0 : 0.0};
}

ObserverConfig ObserverConfig::from_vector(const char* observer, const std::vector<double>& v, size_t offset) {
  TORCH_CHECK(v.size() >= offset + kSize, observer, ": saved state is malformed (", v.size(), " settings)");
  ObserverConfig c;
  c.quant_min = static_cast<int64_t>(v[offset]);
  c.quant_max = static_cast<int64_t>(v[offset + 1]);
  c.symmetric = v[offset + 2] != 0.0;
  c.eps = v[offset + 3];
  c.skip_non_float = v[offset + 4] != 0.0;
  c.validate(observer);
  return c;
}

at::Tensor observer_input(const char* observer, const at::Tensor& x, const ObserverConfig& cfg) {
  TORCH_CHECK(x.defined(), observer, ": input should be a tensor, got None");
  if (cfg.skip_non_float && x.scalar_type() != c10::kFloat) return at::Tensor();
  TORCH_CHECK(x.scalar_type() == c10::kFloat, observer, ": input should be a float32 tensor, got ",
              x.scalar_type());
  TORCH_CHECK(x.device().is_cpu() && x.layout() == c10::kStrided, observer,
              ": input should be a dense CPU tensor, got device ", x.device(), " and layout ", x.layout());
  return x.detach().contiguous();
}

int64_t finite_minmax(const float* x, int64_t n, float* min, float* max) {
  const auto& k = kernels::reduce_kernels();
  if (!k.f32_minmax(n, x, min, max)) return 0;
  // Rare path: recount, keeping finite values only.
  float mn = std::numeric_limits<float>::infinity();
  float mx = -std::numeric_limits<float>::infinity();
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      ++bad;
      continue;
    }
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  *min = mn;
  *max = mx;
  return bad;
}

std::tuple<at::Tensor, at::Tensor> qparams_from_bounds(const ObserverConfig& cfg, const std::vector<float>& min,
                                                      const std::vector<float>& max) {
  const int64_t n = static_cast<int64_t>(min.size());
  at::Tensor scale = at::empty({n}, at::TensorOptions().dtype(c10::kFloat));
  at::Tensor zp = at::empty({n}, at::TensorOptions().dtype(c10::kLong));
  kernels::choose_qparams_per_channel(min.data(), max.data(), n, cfg.quant_min, cfg.quant_max, cfg.symmetric,
                                      static_cast<float>(cfg.eps), scale.data_ptr<float>(),
                                      zp.data_ptr<int64_t>());
  return {scale, zp};
}

at::Tensor float_vector_tensor(const std::vector<float>& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::TensorOptions().dtype(c10::kFloat));
  std::copy(v.begin(), v.end(), t.data_ptr<float>());
  return t;
}

void check_state_version(const char* observer, int64_t version, int64_t newest) {
  TORCH_CHECK(version >= 1 && version <= newest, observer, ": saved state has version ", version,
              ", this torchquantx reads versions 1 to ", newest,
              "; re-run calibration with this version (or load the file with a newer torchquantx)");
}

}  // namespace tqx::observers
