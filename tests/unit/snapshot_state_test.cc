#include "snapshot/snapshot_state.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/snapshot_test_state.h"
#include "vmm/base/error.h"

namespace wisp::snapshot {
namespace {

using testing::sample_state;

std::string rejection(const SnapshotState& s) {
  try {
    validate_state(s, "x.state");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SnapshotStateValidation, AcceptsTheSample) { EXPECT_EQ(rejection(sample_state()), ""); }

TEST(SnapshotStateValidation, BoundsTheVcpuCount) {
  SnapshotState s = sample_state();
  s.vcpus.clear();
  EXPECT_NE(rejection(s).find("x.state: invalid snapshot state: 0 vCPUs"), std::string::npos);
  s = sample_state(kMaxVcpus);
  EXPECT_EQ(rejection(s), "");
  s.vcpus.push_back(s.vcpus.back());
  s.vcpus.back().id = kMaxVcpus;
  EXPECT_NE(rejection(s).find("255 vCPUs"), std::string::npos);
}

TEST(SnapshotStateValidation, ChecksVcpuIds) {
  SnapshotState s = sample_state(2);
  s.vcpus[1].id = 0;
  EXPECT_NE(rejection(s).find("vCPU 0: duplicate id"), std::string::npos);
  s.vcpus[1].id = 2;
  EXPECT_NE(rejection(s).find("vCPU 2: id out of range"), std::string::npos);
}

TEST(SnapshotStateValidation, ChecksBlobSizes) {
  SnapshotState s = sample_state();
  s.vcpus[0].xsave.resize(kMaxBlobBytes + 1);
  EXPECT_NE(rejection(s).find("vCPU 0 xsave"), std::string::npos);
  s = sample_state();
  s.vcpus[0].msrs.resize(kMaxMsrsPerVcpu + 1);
  EXPECT_NE(rejection(s).find("MSRs"), std::string::npos);
}

TEST(SnapshotStateValidation, ChecksRegions) {
  SnapshotState s = sample_state();
  s.memory[1].size = 100;
  EXPECT_NE(rejection(s).find("not 4 KiB page-aligned"), std::string::npos);
  s = sample_state();
  s.memory[1].guest_base = 0x80000;  // inside region 0
  EXPECT_NE(rejection(s).find("overlap in guest memory"), std::string::npos);
  s = sample_state();
  s.memory[1].file_offset = 0x1000;
  EXPECT_NE(rejection(s).find("overlap in the memory file"), std::string::npos);
  s = sample_state();
  s.memory[1].guest_base = ~0ull & ~(kPageSize - 1);
  EXPECT_NE(rejection(s).find("wraps"), std::string::npos);
  s = sample_state();
  s.memory[0].size = 0;
  EXPECT_NE(rejection(s).find("empty"), std::string::npos);
  s.memory.clear();
  EXPECT_NE(rejection(s).find("0 memory regions"), std::string::npos);
}

TEST(SnapshotStateValidation, ChecksDevices) {
  SnapshotState s = sample_state();
  s.devices.push_back(s.devices[0]);
  EXPECT_NE(rejection(s).find("device serial \"ttyS0\": listed twice"), std::string::npos);
  s = sample_state();
  s.devices[0].kind.clear();
  EXPECT_NE(rejection(s).find("missing or overlong"), std::string::npos);
}

TEST(SnapshotMemoryLayout, FileSizeMustMatchExactly) {
  SnapshotState s = sample_state();
  uint64_t size = memory_file_size(s.memory);
  EXPECT_EQ(size, (1u << 20) + (64u << 10));
  EXPECT_NO_THROW(check_memory_file_size(s.memory, size, "m"));
  EXPECT_THROW(check_memory_file_size(s.memory, size - kPageSize, "m"), Error);
  EXPECT_THROW(check_memory_file_size(s.memory, size + kPageSize, "m"), Error);
}

TEST(SnapshotCpu, ReportsADifferentFeatureSet) {
  Metadata m = sample_state().metadata;
  EXPECT_EQ(cpu_mismatch(m, "GenuineIntel", m.cpuid), "");
  EXPECT_NE(cpu_mismatch(m, "AuthenticAMD", m.cpuid).find("vendor"), std::string::npos);
  auto host = m.cpuid;
  host[1].ecx &= ~(1u << 28);  // no AVX on the host
  EXPECT_NE(cpu_mismatch(m, "GenuineIntel", host).find("0x1.0 differs"), std::string::npos);
  host.pop_back();
  EXPECT_NE(cpu_mismatch(m, "GenuineIntel", host).find("missing"), std::string::npos);
}

}  // namespace
}  // namespace wisp::snapshot
