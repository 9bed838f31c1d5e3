// Helpers shared by the pass tests: modules built without Python, error capture, comparisons.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/api/module.h>

#include <string>

namespace tqx::testing {

// A script module built without Python; it has the `training` attribute eval()/train() need.
inline torch::jit::Module make_module(const std::string& name) {
  torch::jit::Module m(name);
  m.register_attribute("training", c10::BoolType::get(), true);
  return m;
}

// The message of the c10::Error fn throws ("" and a test failure when it does not throw).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const c10::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a c10::Error";
  return "";
}

inline double relative_error(const at::Tensor& got, const at::Tensor& expected) {
  return ((got - expected).norm() / expected.norm()).item<double>();
}

// True when the module, or a submodule, has an attribute whose name starts with prefix.
inline bool has_attr_with_prefix(const torch::jit::Module& m, const std::string& prefix) {
  for (const auto& a : m.named_attributes(/*recurse=*/true)) {
    if (a.name.rfind(prefix, 0) == 0 || a.name.find("." + prefix) != std::string::npos) return true;
  }
  return false;
}

}  // namespace tqx::testing
