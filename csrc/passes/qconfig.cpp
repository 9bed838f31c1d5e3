// QConfig presets and the text form kept on prepared modules.
#include "passes/qconfig.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include "kernels/range_search.h"
#include "passes/graph_utils.h"

namespace tqx::passes {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

bool parse_bool(const std::string& key, const std::string& value) {
  if (value == "1" || value == "true" || value == "True") return true;
  if (value == "0" || value == "false" || value == "False") return false;
  TORCH_CHECK(false, "qconfig ", key, " should be true or false, got '", value, "'");
}

int64_t parse_weight_bits(const std::string& value) {
  TORCH_CHECK(value == "4" || value == "8" || value == "16", "qconfig weight_bits should be 4, 8 or 16, got '", value,
              "'");
  return std::stoll(value);
}

double parse_percentile(const std::string& value) {
  double p = std::nan("");
  size_t used = 0;
  try {
    p = std::stod(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TORCH_CHECK(used == value.size() && p > 0.0 && p <= 100.0,
              "qconfig activation_percentile should be a number in (0, 100], got '", value, "'");
  return p;
}

// The shortest text that reads back as the same double.
std::string shortest(double v) {
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

}  // namespace

std::string WeightSpec::describe() const {
  return "w" + std::to_string(bits) + (per_channel ? " per-channel " : " per-tensor ") +
         (symmetric ? "symmetric" : "affine");
}

QConfig QConfig::preset_named(const std::string& spec) {
  // "x86" or "x86;activation_observer=minmax;weight_per_channel=0": a preset, then overrides.
  const auto parts = split(spec, ';');
  TORCH_CHECK(!parts.empty(), "qconfig should name a preset ('x86', 'fbgemm', 'onednn', 'qnnpack'), got ''");
  const std::string name = parts[0];
  QConfig q;
  q.preset = name;
  if (name == "x86" || name == "fbgemm") {
    q.activation_reduce_range = true;
  } else if (name == "onednn") {
    q.activation_reduce_range = false;
  } else if (name == "qnnpack") {
    q.activation_reduce_range = false;
    q.weight_per_channel = false;
    q.engine = "qnnpack";
  } else {
    TORCH_CHECK(false, "qconfig should be one of 'x86', 'fbgemm', 'onednn', 'qnnpack', got '", name, "'");
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto eq = parts[i].find('=');
    TORCH_CHECK(eq != std::string::npos, "qconfig override should be key=value, got '", parts[i], "'");
    const std::string key = parts[i].substr(0, eq), value = parts[i].substr(eq + 1);
    if (key == "activation_observer") {
      TORCH_CHECK(value == "histogram" || value == "minmax" || value == "moving_average_minmax",
                  "qconfig activation_observer should be histogram, minmax or moving_average_minmax, got '", value,
                  "'");
      q.activation_observer = value;
    } else if (key == "activation_method") {
      kernels::RangeMethod m;
      TORCH_CHECK(kernels::parse_range_method(value, &m), "qconfig activation_method should be one of ",
                  kernels::range_method_names(), ", got '", value, "'");
      q.activation_method = value;
    } else if (key == "activation_percentile") {
      q.activation_percentile = parse_percentile(value);
    } else if (key == "activation_reduce_range") {
      q.activation_reduce_range = parse_bool(key, value);
    } else if (key == "weight_per_channel") {
      q.weight_per_channel = parse_bool(key, value);
    } else if (key == "weight_symmetric") {
      q.weight_symmetric = parse_bool(key, value);
    } else if (key == "weight_bits") {
      q.weight_bits = parse_weight_bits(value);
    } else {
      TORCH_CHECK(false, "qconfig override key should be one of activation_observer, activation_method, "
                  "activation_percentile, activation_reduce_range, weight_per_channel, weight_symmetric, "
                  "weight_bits, got '", key, "'");
    }
  }
  TORCH_CHECK(q.activation_method == "minmax" || q.activation_observer == "histogram", "qconfig activation_method=",
              q.activation_method, " needs activation_observer=histogram, got activation_observer=",
              q.activation_observer);
  return q;
}

bool QConfig::skips(const std::string& layer, const std::vector<std::string>& types) const {
  for (const std::string& prefix : skip_modules) {
    if (layer == prefix || layer.rfind(prefix + ".", 0) == 0) return true;
  }
  for (const std::string& t : types) {
    if (std::find(skip_types.begin(), skip_types.end(), t) != skip_types.end()) return true;
  }
  return false;
}

bool QConfig::skips(const torch::jit::Node* node) const {
  if (skip_modules.empty() && skip_types.empty()) return false;
  return skips(layer_of(node), skip_types.empty() ? std::vector<std::string>{} : module_types_of(node));
}

std::string QConfig::serialize() const {
  std::ostringstream os;
  os << "preset=" << preset << ";activation_reduce_range=" << activation_reduce_range
     << ";activation_observer=" << activation_observer << ";activation_method=" << activation_method
     << ";activation_percentile=" << shortest(activation_percentile) << ";weight_per_channel=" << weight_per_channel
     << ";weight_symmetric=" << weight_symmetric << ";weight_bits=" << weight_bits << ";engine=" << engine << ";skip_modules=";
  for (size_t i = 0; i < skip_modules.size(); ++i) os << (i ? "," : "") << skip_modules[i];
  os << ";skip_types=";
  for (size_t i = 0; i < skip_types.size(); ++i) os << (i ? "," : "") << skip_types[i];
  return os.str();
}

QConfig QConfig::deserialize(const std::string& text) {
  QConfig q;
  for (const std::string& kv : split(text, ';')) {
    const auto eq = kv.find('=');
    TORCH_CHECK(eq != std::string::npos, "torchquantx: malformed qconfig text '", text, "'");
    const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    if (key == "preset") q.preset = value;
    else if (key == "activation_reduce_range") q.activation_reduce_range = value == "1";
    else if (key == "activation_observer") q.activation_observer = value;
    else if (key == "activation_method") q.activation_method = value;
    else if (key == "activation_percentile") q.activation_percentile = parse_percentile(value);
    else if (key == "weight_per_channel") q.weight_per_channel = value == "1";
    else if (key == "weight_symmetric") q.weight_symmetric = value == "1";
    else if (key == "weight_bits") q.weight_bits = parse_weight_bits(value);
    else if (key == "engine") q.engine = value;
    else if (key == "skip_modules") q.skip_modules = split(value, ',');
    else if (key == "skip_types") q.skip_types = split(value, ',');
  }
  return q;
}

}  // namespace tqx::passes
