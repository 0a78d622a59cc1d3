#include "snapshot/snapshot_state.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/snapshot_test_state.h"
#include "base/error.h"

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

TEST(SnapshotStateValidation, MachineMemoryMustMatchTheLayout) {
  SnapshotState s = sample_state();
  s.machine.mem_bytes -= kPageSize;
  EXPECT_NE(rejection(s).find("machine memory size " + std::to_string(s.machine.mem_bytes) +
                              " does not match the memory layout's " +
                              std::to_string(s.machine.mem_bytes + kPageSize) + " bytes"),
            std::string::npos);
  s.machine.mem_bytes = 0;
  EXPECT_NE(rejection(s).find("machine memory size 0"), std::string::npos);
}

TEST(SnapshotStateValidation, ChecksDrives) {
  SnapshotState s = sample_state();
  s.machine.drives[0].path.clear();
  EXPECT_NE(rejection(s).find("drive has an empty, over-long or malformed path"),
            std::string::npos);
  s.machine.drives[0].path = std::string("disk\0.img", 9);
  EXPECT_NE(rejection(s).find("malformed path"), std::string::npos);
  s.machine.drives[0].path = std::string(kMaxPathBytes + 1, 'a');
  EXPECT_NE(rejection(s).find("malformed path"), std::string::npos);
  s.machine.drives[0].path = std::string(kMaxPathBytes, 'a');
  EXPECT_EQ(rejection(s), "");
  s.machine.drives.assign(kMaxDrives, {"d.img", false});
  EXPECT_EQ(rejection(s), "");
  s.machine.drives.push_back({"d.img", false});
  EXPECT_NE(rejection(s).find("too many drives"), std::string::npos);
}

TEST(SnapshotStateValidation, RefusesReservedVsockCids) {
  SnapshotState s = sample_state();
  for (uint64_t cid : {0ull, 1ull, 2ull, 0xffffffffull, 1ull << 32}) {
    s.machine.vsock_cid = cid;
    EXPECT_NE(rejection(s).find("vsock guest CID " + std::to_string(cid) + " is reserved"),
              std::string::npos)
        << cid;
  }
  s.machine.vsock_cid = 0xfffffffe;
  EXPECT_EQ(rejection(s), "");
  s.machine.vsock = false;  // no vsock: the CID means nothing
  s.machine.vsock_cid = 0;
  EXPECT_EQ(rejection(s), "");
}

TEST(SnapshotStateValidation, BoundsTheId) {
  SnapshotState s = sample_state();
  s.id = std::string(kMaxNameBytes, 'a');
  EXPECT_EQ(rejection(s), "");
  s.id += 'a';
  EXPECT_NE(rejection(s).find("snapshot id too long"), std::string::npos);
}

// A valid diff of sample_state(): one bitmap bit per memory file page.
SnapshotState sample_diff() {
  SnapshotState s = sample_state();
  s.diff.parent_dir = "/snapshots/base";
  s.diff.parent_id = "fedcba9876543210fedcba9876543210";
  s.diff.pages.assign((memory_file_size(s.memory) / kPageSize + 7) / 8, 0);
  s.diff.pages[0] = 0x05;
  return s;
}

TEST(SnapshotStateValidation, AcceptsADiff) {
  SnapshotState s = sample_diff();
  EXPECT_TRUE(s.is_diff());
  EXPECT_EQ(rejection(s), "");
}

TEST(SnapshotStateValidation, DiffBitmapMustCoverTheMemoryFile) {
  SnapshotState s = sample_diff();
  size_t bytes = s.diff.pages.size();  // (256 + 16 pages) / 8
  EXPECT_EQ(bytes, 34u);
  s.diff.pages.push_back(0);
  EXPECT_NE(rejection(s).find("diff page bitmap has 35 bytes, the memory layout needs 34"),
            std::string::npos);
  s.diff.pages.resize(bytes - 1);
  EXPECT_NE(rejection(s).find("diff page bitmap has 33 bytes"), std::string::npos);
  s.diff.pages.clear();
  EXPECT_NE(rejection(s).find("diff page bitmap has 0 bytes"), std::string::npos);
}

TEST(SnapshotStateValidation, DiffNeedsAWellFormedParent) {
  SnapshotState s = sample_diff();
  s.diff.parent_dir.clear();
  EXPECT_NE(rejection(s).find("malformed parent reference"), std::string::npos);
  s = sample_diff();
  s.diff.parent_dir = std::string(kMaxPathBytes + 1, '/');
  EXPECT_NE(rejection(s).find("malformed parent reference"), std::string::npos);
  s = sample_diff();
  s.diff.parent_id = std::string(kMaxNameBytes + 1, 'f');
  EXPECT_NE(rejection(s).find("malformed parent reference"), std::string::npos);
}

TEST(SnapshotStateValidation, RefusesDiffFieldsOnAFullSnapshot) {
  SnapshotState s = sample_diff();
  s.diff.parent_id.clear();  // a full snapshot, with a leftover bitmap and parent dir
  EXPECT_FALSE(s.is_diff());
  EXPECT_NE(rejection(s).find("diff fields set on a full snapshot"), std::string::npos);
  s.diff.parent_dir.clear();
  EXPECT_NE(rejection(s).find("diff fields set on a full snapshot"), std::string::npos);
  s = sample_diff();
  s.diff.parent_id.clear();
  s.diff.pages.clear();
  EXPECT_NE(rejection(s).find("diff fields set on a full snapshot"), std::string::npos);
  s.diff.parent_dir.clear();
  EXPECT_EQ(rejection(s), "");
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
