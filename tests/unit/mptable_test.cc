#include "vmm/boot/mptable.h"

#include <gtest/gtest.h>

#include <cstring>

#include "base/error.h"
#include "vmm/arch/layout.h"

namespace wisp {
namespace {

uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; ++i) s = static_cast<uint8_t>(s + p[i]);
  return s;
}

TEST(MpTable, ChecksumsAndPointersAreValid) {
  for (uint32_t cpus : {1u, 2u, 8u, 64u, kMpTableMaxCpus}) {
    auto t = build_mptable(layout::kEbdaStart, cpus);
    ASSERT_GE(t.size(), 16u + 44u);
    EXPECT_EQ(std::memcmp(t.data(), "_MP_", 4), 0);
    EXPECT_EQ(sum(t.data(), 16), 0) << "floating pointer checksum";
    uint32_t cfg;
    std::memcpy(&cfg, &t[4], 4);
    EXPECT_EQ(cfg, layout::kEbdaStart + 16);
    const uint8_t* c = t.data() + 16;
    EXPECT_EQ(std::memcmp(c, "PCMP", 4), 0);
    uint16_t len;
    std::memcpy(&len, c + 4, 2);
    EXPECT_EQ(len, t.size() - 16);
    EXPECT_EQ(sum(c, len), 0) << "config table checksum";
  }
}

TEST(MpTable, OneProcessorEntryPerCpuWithBspFirst) {
  auto t = build_mptable(layout::kEbdaStart, 4);
  const uint8_t* e = t.data() + 16 + 44;
  for (uint8_t cpu = 0; cpu < 4; ++cpu, e += 20) {
    EXPECT_EQ(e[0], 0);    // processor entry
    EXPECT_EQ(e[1], cpu);  // APIC id
    EXPECT_EQ(e[3], cpu == 0 ? 3 : 1);
  }
  EXPECT_EQ(e[0], 1);  // then the ISA bus
  e += 8;
  EXPECT_EQ(e[0], 2);  // then the IOAPIC, with the id after the last CPU
  EXPECT_EQ(e[1], 4);
  uint16_t count;
  std::memcpy(&count, t.data() + 16 + 34, 2);
  // 4 CPUs, bus, IOAPIC, ExtINT, 15 ISA IRQs, 2 local interrupts.
  EXPECT_EQ(count, 4 + 1 + 1 + 1 + 15 + 2);
}

TEST(MpTable, TimerIrqGoesToIoapicPin2) {
  auto t = build_mptable(layout::kEbdaStart, 1);
  const uint8_t* e = t.data() + 16 + 44 + 20 + 8 + 8;
  bool found = false;
  for (; e < t.data() + t.size(); e += 8)
    if (e[0] == 3 && e[1] == 0 && e[5] == 0) {
      EXPECT_EQ(e[7], 2);
      found = true;
    }
  EXPECT_TRUE(found);
}

TEST(MpTable, RejectsBadCpuCounts) {
  EXPECT_THROW(build_mptable(layout::kEbdaStart, 0), Error);
  EXPECT_THROW(build_mptable(layout::kEbdaStart, kMpTableMaxCpus + 1), Error);
}

}  // namespace
}  // namespace wisp
