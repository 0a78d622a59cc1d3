#include "vmm/arch/cpuid.h"

#include <gtest/gtest.h>

namespace wisp {
namespace {

CpuidEntries host() {
  return {
      {0x1, 0, 0, 0x000806f8, 0x00000800, 0x7ed8320b, 0x178bfbff},
      {0x4, 0, 1, 0x00000121, 0, 0, 0},
      {0x4, 3, 1, 0, 0, 0, 0},
      {0xb, 0, 1, 0, 0, 0, 0},
      {0xb, 1, 1, 0, 0, 0, 0},
      {0xb, 2, 1, 0, 0, 0, 0},
      {0x80000001, 0, 0, 0, 0, 0x2, 0},
      {0x80000008, 0, 0, 0x3030, 0, 0xf00f, 0},
  };
}

TEST(Cpuid, HypervisorBitAndApicId) {
  auto c = vcpu_cpuid(host(), 3, 4);
  const auto* l1 = find_cpuid(c, 1);
  ASSERT_TRUE(l1);
  EXPECT_TRUE(l1->ecx & (1u << 31));
  EXPECT_EQ(l1->ebx >> 24, 3u);
  EXPECT_EQ((l1->ebx >> 16) & 0xff, 4u);
  EXPECT_EQ(l1->ebx & 0xffff, 0x0800u);  // CLFLUSH size kept
  EXPECT_TRUE(l1->edx & (1u << 28));
}

TEST(Cpuid, TscDeadlineIsAdvertisedOnlyWhenKvmEmulatesIt) {
  EXPECT_FALSE(find_cpuid(vcpu_cpuid(host(), 0, 1), 1)->ecx & (1u << 24));
  CpuidOptions o;
  o.tsc_deadline_timer = true;
  EXPECT_TRUE(find_cpuid(vcpu_cpuid(host(), 0, 1, o), 1)->ecx & (1u << 24));
}

TEST(Cpuid, SingleVcpuHasNoHtt) {
  auto c = vcpu_cpuid(host(), 0, 1);
  EXPECT_FALSE(find_cpuid(c, 1)->edx & (1u << 28));
  EXPECT_FALSE(find_cpuid(c, 0x80000001)->ecx & 0x2);
  EXPECT_EQ(find_cpuid(c, 0x80000008)->ecx & 0xff, 0u);
}

TEST(Cpuid, ExtendedTopologyDescribesOneCorePerVcpu) {
  auto c = vcpu_cpuid(host(), 2, 6);
  const auto* smt = find_cpuid(c, 0xb, 0);
  const auto* core = find_cpuid(c, 0xb, 1);
  const auto* end = find_cpuid(c, 0xb, 2);
  ASSERT_TRUE(smt && core && end);
  EXPECT_EQ(smt->ebx, 1u);
  EXPECT_EQ(core->ebx, 6u);
  EXPECT_EQ(core->eax, 3u);  // 6 cores need 3 bits of APIC id
  EXPECT_EQ(core->edx, 2u);
  EXPECT_EQ((core->ecx >> 8) & 0xff, 2u);
  EXPECT_EQ(end->ebx, 0u);
  EXPECT_EQ(find_cpuid(c, 0x80000008)->ecx & 0xff, 5u);
  EXPECT_EQ(find_cpuid(c, 0x4, 0)->eax >> 26, 5u);
}

}  // namespace
}  // namespace wisp
