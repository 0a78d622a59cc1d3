// The saved state of one microVM as plain C++ values (no fds, no host pointers): what save
// collects from the components and what restore hands back to them. Mirrors state.capnp, so
// callers never touch Cap'n Proto. A SnapshotState read from disk is untrusted until
// validate_state() accepted it (DESIGN.md rule 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wisp::snapshot {

using Bytes = std::vector<uint8_t>;

constexpr uint64_t kPageSize = 4096;
constexpr uint32_t kMaxVcpus = 254;  // KVM's x86 limit for the legacy APIC id space
constexpr size_t kMaxRegions = 64;
constexpr size_t kMaxMsrsPerVcpu = 1024;
constexpr size_t kMaxCpuidLeaves = 512;
constexpr size_t kMaxDevices = 256;
constexpr size_t kMaxBlobBytes = 1 << 20;  // any one KVM structure or device state
constexpr size_t kLapicBytes = 1024;       // KVM_APIC_REG_SIZE
constexpr size_t kMaxNameBytes = 128;

struct CpuidLeaf {
  uint32_t function = 0;
  uint32_t index = 0;
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  bool operator==(const CpuidLeaf&) const = default;
};

struct Metadata {
  std::string creator_version;
  int64_t created_unix_ns = 0;
  std::string cpu_vendor;
  std::vector<CpuidLeaf> cpuid;
  bool operator==(const Metadata&) const = default;
};

struct MemoryRegion {
  uint64_t guest_base = 0;
  uint64_t size = 0;
  uint64_t file_offset = 0;
  bool operator==(const MemoryRegion&) const = default;
};

struct Msr {
  uint32_t index = 0;
  uint64_t value = 0;
  bool operator==(const Msr&) const = default;
};

struct VcpuState {
  uint32_t id = 0;
  Bytes regs, sregs, fpu, xsave, xcrs;
  std::vector<Msr> msrs;
  Bytes lapic;
  Bytes events, debugregs;
  uint32_t mp_state = 0;
  uint32_t tsc_khz = 0;
  bool operator==(const VcpuState&) const = default;
};

struct IrqchipState {
  Bytes pic_master, pic_slave, ioapic;
  bool operator==(const IrqchipState&) const = default;
};

struct ClockState {
  uint64_t clock_ns = 0;
  uint32_t flags = 0;
  bool operator==(const ClockState&) const = default;
};

struct DeviceState {
  std::string kind;
  std::string name;
  Bytes data;
  bool operator==(const DeviceState&) const = default;
};

struct DriveConfig {
  std::string path;
  bool read_only = false;
  uint64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  bool operator==(const DriveConfig&) const = default;
};

struct MachineConfigState {
  uint64_t mem_bytes = 0;
  std::vector<DriveConfig> drives;
  bool rng = false;
  bool vsock = false;
  uint64_t vsock_cid = 0;
  bool operator==(const MachineConfigState&) const = default;
};

// Empty parent_id: a full snapshot.
struct DiffInfo {
  std::string parent_dir;
  std::string parent_id;
  Bytes pages;  // bitmap over memory file pages, LSB first
  bool operator==(const DiffInfo&) const = default;
};

constexpr size_t kMaxDrives = 16;
constexpr size_t kMaxPathBytes = 4096;
constexpr uint32_t kMaxDiffDepth = 16;

struct SnapshotState {
  Metadata metadata;
  std::vector<MemoryRegion> memory;
  std::vector<VcpuState> vcpus;
  IrqchipState irqchip;
  Bytes pit;
  ClockState clock;
  std::vector<DeviceState> devices;
  uint32_t tsc_khz = 0;
  MachineConfigState machine;
  std::string id;
  DiffInfo diff;
  bool is_diff() const { return !diff.parent_id.empty(); }
  bool operator==(const SnapshotState&) const = default;
};

// Checks an untrusted state: vCPU count and ids, blob sizes, memory regions (non-empty,
// page-aligned, no overflow, non-overlapping in guest space and in the file), device entries.
// Throws wisp::Error "<file>: <what is wrong>"; `file` names where the state came from.
void validate_state(const SnapshotState& state, const std::string& file);

// The memory file size the layout needs: the end of the furthest region.
uint64_t memory_file_size(const std::vector<MemoryRegion>& regions);

// Checks that a memory file of `file_size` bytes is exactly what `regions` describe.
// Throws wisp::Error naming `memory_file`.
void check_memory_file_size(const std::vector<MemoryRegion>& regions, uint64_t file_size,
                            const std::string& memory_file);

// Lays out guest regions (base, size) back to back in a memory file, in the given order.
std::vector<MemoryRegion> pack_regions(const std::vector<std::pair<uint64_t, uint64_t>>& ranges);

// Compares the CPU a snapshot was taken on with the host's (vendor and every saved CPUID leaf).
// Returns an empty string when compatible, else what differs, for the caller's error message.
std::string cpu_mismatch(const Metadata& saved, const std::string& host_vendor,
                         const std::vector<CpuidLeaf>& host_cpuid);

}  // namespace wisp::snapshot
