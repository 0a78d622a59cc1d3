// The layout of KVM's vCPU statistics file (vmm/kvm/vcpu_stats.h), over synthetic files laid out
// as the kernel writes them (include/uapi/linux/kvm.h: kvm_stats_header, kvm_stats_desc).
#include "vmm/kvm/vcpu_stats.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"

namespace wisp {
namespace {

constexpr uint32_t kNameSize = 48;

struct Desc {
  std::string name;
  uint32_t flags = 0;  // cumulative, no unit
  uint16_t size = 1;
  uint32_t offset = 0;
};

void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) { std::memcpy(&b[at], &v, 4); }

// Header with desc_offset 24 and data_offset 1000 (only the offsets matter to the parser).
std::vector<uint8_t> header(uint32_t num_desc, uint32_t name_size = kNameSize) {
  std::vector<uint8_t> h(24, 0);
  put32(h, 4, name_size);
  put32(h, 8, num_desc);
  put32(h, 16, 24);
  put32(h, 20, 1000);
  return h;
}

std::vector<uint8_t> descriptors(const std::vector<Desc>& descs) {
  std::vector<uint8_t> b(descs.size() * (16 + kNameSize), 0);
  for (size_t i = 0; i < descs.size(); ++i) {
    size_t at = i * (16 + kNameSize);
    put32(b, at, descs[i].flags);
    std::memcpy(&b[at + 6], &descs[i].size, 2);
    put32(b, at + 8, descs[i].offset);
    std::memcpy(&b[at + 16], descs[i].name.data(), descs[i].name.size());
  }
  return b;
}

TEST(VcpuStatsLayout, FindsTheCountersByName) {
  std::vector<Desc> d = {{"halt_successful_poll", 0, 1, 0},
                         {"exits", 0, 1, 8},
                         {"pf_taken", 0, 1, 16},
                         {"pf_fixed", 0, 1, 24},
                         {"halt_exits", 0, 1, 32},
                         {"mmio_exits", 0, 1, 40},
                         {"io_exits", 0, 1, 48}};
  auto h = header(d.size());
  auto b = descriptors(d);
  VcpuStatsLayout l = parse_vcpu_stats_layout(h.data(), h.size(), b.data(), b.size());
  EXPECT_EQ(l.exits, 1008);
  EXPECT_EQ(l.nested_page_faults, 1016);
  EXPECT_EQ(l.pages_mapped, 1024);
  EXPECT_EQ(l.halt_exits, 1032);
  EXPECT_EQ(l.mmio_exits, 1040);
  EXPECT_EQ(l.io_exits, 1048);
}

TEST(VcpuStatsLayout, SkipsHistogramsPeaksAndUnterminatedNames) {
  std::vector<Desc> d = {{"exits", 0x3, 1, 8},      // a linear histogram of that name
                         {"pf_taken", 0x2, 1, 16},  // a peak
                         {"pf_fixed", 0, 4, 24},    // four values
                         {std::string(kNameSize, 'x'), 0, 1, 32}};
  auto h = header(d.size());
  auto b = descriptors(d);
  VcpuStatsLayout l = parse_vcpu_stats_layout(h.data(), h.size(), b.data(), b.size());
  EXPECT_EQ(l.exits, -1);
  EXPECT_EQ(l.nested_page_faults, -1);
  EXPECT_EQ(l.pages_mapped, -1);
}

TEST(VcpuStatsLayout, RefusesWhatDoesNotFit) {
  auto b = descriptors({{"exits", 0, 1, 8}});
  auto h = header(2);  // claims two descriptors, the block holds one
  EXPECT_THROW(parse_vcpu_stats_layout(h.data(), h.size(), b.data(), b.size()), Error);
  h = header(1, 0);
  EXPECT_THROW(parse_vcpu_stats_layout(h.data(), h.size(), b.data(), b.size()), Error);
  h = header(1, 100000);
  EXPECT_THROW(parse_vcpu_stats_layout(h.data(), h.size(), b.data(), b.size()), Error);
  h = header(1);
  EXPECT_THROW(parse_vcpu_stats_layout(h.data(), 20, b.data(), b.size()), Error);
}

TEST(VcpuCounts, SumOverVcpus) {
  VcpuCounts a{true, 10, 4, 3, 1, 2, 0};
  VcpuCounts b{true, 5, 1, 1, 0, 1, 7};
  a += b;
  EXPECT_EQ(a.exits, 15u);
  EXPECT_EQ(a.nested_page_faults, 5u);
  EXPECT_EQ(a.io_exits, 7u);
  EXPECT_TRUE(a.available);
}

}  // namespace
}  // namespace wisp
