// Which specs a standby VMM (manager/vmm_pool.h) may boot: a boot order carries each drive's
// path and mode only, so a drive with other options (a rate limit) must boot the usual way, or
// its limit would be lost.
#include <gtest/gtest.h>

#include "manager/vmm_pool.h"

namespace wisp::manager {
namespace {

TEST(StandbyWhyNotBoot, RateLimitedDrivesBootTheUsualWay) {
  VmSpec spec;
  spec.mem_bytes = 128ull << 20;
  spec.vcpus = 1;
  const StandbyClass size{128ull << 20, 1};
  const JailFlags jail;
  for (const char* d : {"d.img", "d.img,ro"}) {
    spec.drives = {d};
    EXPECT_EQ(StandbyVmm::why_not_boot(spec, size, jail), "") << d;
  }
  for (const char* d : {"d.img,bw=1M", "d.img,ro,ops=10", "d.img,bw=1M,ro"}) {
    spec.drives = {d};
    EXPECT_NE(StandbyVmm::why_not_boot(spec, size, jail).find("rate limit"), std::string::npos)
        << d;
  }
}

}  // namespace
}  // namespace wisp::manager
