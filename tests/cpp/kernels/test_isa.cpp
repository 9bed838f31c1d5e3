// ISA names, detection and the dispatch cap.
#include <gtest/gtest.h>

#include <stdexcept>

#include "kernels/isa.h"

namespace tqx {
namespace {

using kernels::Isa;

TEST(Isa, NamesRoundTrip) {
  for (Isa isa : {Isa::kScalar, Isa::kAVX2, Isa::kAVXVNNI, Isa::kAVX512, Isa::kAVX512VNNI, Isa::kAMX}) {
    EXPECT_EQ(kernels::parse_isa(kernels::isa_name(isa)), isa);
  }
  EXPECT_EQ(kernels::parse_isa("AVX2"), Isa::kAVX2);
  EXPECT_THROW(kernels::parse_isa("sse9"), std::invalid_argument);
}

TEST(Isa, ScalarAlwaysSupportedAndCapWorks) {
  EXPECT_TRUE(kernels::isa_supported(Isa::kScalar));
  EXPECT_TRUE(kernels::isa_supported(kernels::detected_isa()));
  kernels::set_max_isa(Isa::kScalar);
  EXPECT_EQ(kernels::active_isa(), Isa::kScalar);
  kernels::reset_max_isa();
  if (!kernels::isa_supported(Isa::kAVX512VNNI)) {
    EXPECT_THROW(kernels::set_max_isa(Isa::kAVX512VNNI), std::invalid_argument);
  }
}

}  // namespace
}  // namespace tqx
