#include "snapshot/snapshot_state.h"

#include <gtest/gtest.h>

#include <string>

#include "base/error.h"
#include "tests/unit/snapshot_test_state.h"
#include "vmm/boot/mptable.h"
#include "vmm/virtio/mmio_layout.h"

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
  s.machine.vcpus.clear();
  EXPECT_NE(rejection(s).find("x.state: invalid snapshot state: machine state: 0 vCPUs"),
            std::string::npos);
  s = sample_state(kMpTableMaxCpus);
  EXPECT_EQ(rejection(s), "");
  s.machine.vcpus.push_back(s.machine.vcpus.back());
  s.machine.vcpus.back().id = kMpTableMaxCpus;
  EXPECT_NE(rejection(s).find("255 vCPUs"), std::string::npos);
}

TEST(SnapshotStateValidation, ChecksVcpuIds) {
  SnapshotState s = sample_state(2);
  s.machine.vcpus[1].id = 0;
  EXPECT_NE(rejection(s).find("vCPU 1 has id 0"), std::string::npos);
  s.machine.vcpus[1].id = 2;
  EXPECT_NE(rejection(s).find("vCPU 1 has id 2"), std::string::npos);
}

TEST(SnapshotStateValidation, ChecksEachVcpusImages) {
  SnapshotState s = sample_state();
  s.machine.vcpus[1].lapic.resize(10);
  EXPECT_NE(rejection(s).find("vCPU 1: vCPU state: lapic image is 10 bytes"), std::string::npos);
  s = sample_state();
  s.machine.vcpus[0].xsave.resize(KvmImageSize::kXsaveMax + 4);
  EXPECT_NE(rejection(s).find("vCPU 0: vCPU state: xsave"), std::string::npos);
  s = sample_state();
  s.machine.vcpus[0].msrs.resize(KvmImageSize::kMaxMsrs + 1);
  EXPECT_NE(rejection(s).find("msrs has"), std::string::npos);
}

TEST(SnapshotStateValidation, ChecksTheVmSerialAndCpuid) {
  SnapshotState s = sample_state();
  s.machine.vm.pit.clear();
  EXPECT_NE(rejection(s).find("machine state: VM state: pit image"), std::string::npos);
  s = sample_state();
  s.machine.serial.mcr = 0xff;
  EXPECT_NE(rejection(s).find("machine state: serial state: mcr"), std::string::npos);
  s = sample_state();
  s.machine.cpuid.resize(MachineState::kMaxCpuidEntries + 1);
  EXPECT_NE(rejection(s).find("513 CPUID entries"), std::string::npos);
  s = sample_state();
  s.machine.cpu_model = static_cast<CpuModel>(7);
  EXPECT_NE(rejection(s).find("machine state: CPU model 7 is unknown"), std::string::npos);
  s.machine.cpu_model = CpuModel::kX86_64_v2;
  EXPECT_EQ(rejection(s), "");
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
  s.machine.virtio[1].device = VsockState{3};  // an rng slot with a vsock's state
  EXPECT_NE(rejection(s).find("virtio slot 1: a virtio-rng holds a virtio-vsock's state"),
            std::string::npos);
  s = sample_state();
  s.machine.virtio[2].transport.status |= 0x20;
  EXPECT_NE(rejection(s).find("virtio slot 2: transport state: status"), std::string::npos);
  s = sample_state();
  std::get<BlockState>(s.machine.virtio[0].device).seg_max = 0;
  EXPECT_NE(rejection(s).find("virtio slot 0: virtio-blk state: seg_max 0"), std::string::npos);
  s = sample_state();
  while (s.machine.virtio.size() <= kMaxVirtioMmioDevices)
    s.machine.virtio.push_back(s.machine.virtio[1]);
  EXPECT_NE(rejection(s).find("12 virtio devices"), std::string::npos);
}

TEST(SnapshotStateValidation, MachineMemoryMustMatchTheLayout) {
  SnapshotState s = sample_state();
  s.machine.mem_bytes -= kPageSize;
  EXPECT_NE(rejection(s).find("machine memory size " + std::to_string(s.machine.mem_bytes) +
                              " does not match the memory layout's " +
                              std::to_string(s.machine.mem_bytes + kPageSize) + " bytes"),
            std::string::npos);
  s.machine.mem_bytes = 0;
  EXPECT_NE(rejection(s).find("memory size 0 is not a whole number of pages"), std::string::npos);
}

TEST(SnapshotStateValidation, ChecksDrives) {
  SnapshotState s = sample_state();
  auto& drive = std::get<BlockSpec>(s.machine.virtio[0].spec);
  drive.path.clear();
  EXPECT_NE(rejection(s).find("virtio-blk spec: path is empty"), std::string::npos);
  drive.path = std::string("disk\0.img", 9);
  EXPECT_NE(rejection(s).find("path contains a NUL byte"), std::string::npos);
  drive.path = std::string(BlockSpec::kMaxPathBytes + 1, 'a');
  EXPECT_NE(rejection(s).find("path is 4097 bytes"), std::string::npos);
  drive.path = std::string(BlockSpec::kMaxPathBytes, 'a');
  EXPECT_EQ(rejection(s), "");
}

TEST(SnapshotStateValidation, RefusesReservedVsockCids) {
  for (uint64_t cid : {0ull, 1ull, 2ull, 0xffffffffull, 1ull << 32}) {
    SnapshotState s = sample_state();
    std::get<VsockSpec>(s.machine.virtio[2].spec).guest_cid = cid;
    EXPECT_NE(rejection(s).find("guest CID " + std::to_string(cid) + " is reserved"),
              std::string::npos)
        << cid;
    s = sample_state();
    std::get<VsockState>(s.machine.virtio[2].device).guest_cid = cid;
    EXPECT_NE(rejection(s).find("guest CID " + std::to_string(cid) + " is reserved"),
              std::string::npos)
        << cid;
  }
  SnapshotState s = sample_state();
  std::get<VsockSpec>(s.machine.virtio[2].spec).guest_cid = 0xfffffffe;
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
  CpuidEntries saved = sample_state().machine.cpuid;
  EXPECT_EQ(cpu_vendor(saved), "GenuineIntel");
  EXPECT_EQ(cpu_mismatch(saved, saved), "");
  auto host = saved;
  host[2].flags = 0;  // how KVM indexes the entry, not what the guest sees
  EXPECT_EQ(cpu_mismatch(saved, host), "");
  host[0].ebx = 0x68747541;  // "AuthenticAMD"
  host[0].edx = 0x69746e65;
  host[0].ecx = 0x444d4163;
  EXPECT_NE(cpu_mismatch(saved, host).find("vendor \"GenuineIntel\", host \"AuthenticAMD\""),
            std::string::npos);
  host = saved;
  host[1].ecx &= ~(1u << 28);  // no AVX on the host
  EXPECT_NE(cpu_mismatch(saved, host).find("0x1.0 differs"), std::string::npos);
  host = saved;
  host.pop_back();
  EXPECT_NE(cpu_mismatch(saved, host).find("0x7.0 is missing"), std::string::npos);
}

}  // namespace
}  // namespace wisp::snapshot
