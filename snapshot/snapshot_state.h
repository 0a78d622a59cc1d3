// What a snapshot's state file holds: vmm's MachineState as it is, plus what the snapshot layer
// owns (metadata, the memory file's layout, the snapshot's id and a diff's parent). A
// SnapshotState read from disk is untrusted until validate_state() accepted it (DESIGN.md rule
// 1): the machine's own validate() checks its parts, this layer the file-level facts.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vmm/kvm/cpu_types.h"
#include "vmm/machine/machine_state.h"

namespace wisp::snapshot {

using Bytes = std::vector<uint8_t>;

constexpr uint64_t kPageSize = 4096;
constexpr size_t kMaxRegions = 64;
constexpr size_t kMaxNameBytes = 128;
constexpr size_t kMaxPathBytes = 4096;
constexpr uint32_t kMaxDiffDepth = 16;

struct Metadata {
  std::string creator_version;
  int64_t created_unix_ns = 0;
  bool operator==(const Metadata&) const = default;
};

// Where one guest RAM region lies in the memory file.
struct MemoryFileRegion {
  uint64_t guest_base = 0;
  uint64_t size = 0;
  uint64_t file_offset = 0;
  bool operator==(const MemoryFileRegion&) const = default;
};

// Empty parent_id: a full snapshot.
struct DiffInfo {
  std::string parent_dir;
  std::string parent_id;
  Bytes pages;  // bitmap over memory file pages, LSB first
  bool operator==(const DiffInfo&) const = default;
};

struct SnapshotState {
  Metadata metadata;
  std::vector<MemoryFileRegion> memory;
  MachineState machine;
  std::string id;
  DiffInfo diff;
  bool is_diff() const { return !diff.parent_id.empty(); }
  bool operator==(const SnapshotState&) const = default;
};

// Checks an untrusted state: the machine (MachineState::validate), the memory regions (1 to
// kMaxRegions, non-empty, page-aligned, no overflow, non-overlapping in guest space and in the
// file, as much memory as the machine has), the id, and a diff's parent and page bitmap.
// Throws wisp::Error "<file>: invalid snapshot state: <what is wrong>"; `file` names where the
// state came from.
void validate_state(const SnapshotState& state, const std::string& file);

// The memory file size the layout needs: the end of the furthest region.
uint64_t memory_file_size(const std::vector<MemoryFileRegion>& regions);

// Checks that a memory file of `file_size` bytes is exactly what `regions` describe.
// Throws wisp::Error naming `memory_file`.
void check_memory_file_size(const std::vector<MemoryFileRegion>& regions, uint64_t file_size,
                            const std::string& memory_file);

// Lays out guest regions (base, size) back to back in a memory file, in the given order.
std::vector<MemoryFileRegion> pack_regions(
    const std::vector<std::pair<uint64_t, uint64_t>>& ranges);

// The vendor string of CPUID leaf 0 ("GenuineIntel"), or "" when the leaf is missing.
std::string cpu_vendor(const CpuidEntries& cpuid);

// Compares the CPUID a snapshot was taken with (`saved`) with what this host would give
// (`host`): the vendor and every saved leaf's registers. Returns an empty string when
// compatible, else what differs, for the caller's error message.
std::string cpu_mismatch(const CpuidEntries& saved, const CpuidEntries& host);

}  // namespace wisp::snapshot
