// A snapshot on disk is a directory holding the state file and the memory file. It is written
// atomically (DESIGN.md rule 7): everything goes into a temp directory next to the target, is
// fsynced, and is renamed into place; a failure or a crash never leaves a directory at the
// target, and a failure removes the temp directory.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "snapshot/memory_file.h"
#include "snapshot/snapshot_state.h"
#include "snapshot/state_file.h"

namespace wisp::snapshot {

constexpr const char* kStateFileName = "state";
constexpr const char* kMemoryFileName = "memory";

struct SnapshotWriteOptions {
  // Test hook: called before each step ("state", "memory", "sync", "rename"); may throw.
  std::function<void(std::string_view step)> before_step;
  // Memory file pages worth reading (nullptr: all); others are written as holes. For a diff
  // snapshot the writer also skips pages outside state.diff.pages.
  const std::vector<bool>* data_pages = nullptr;
};

// Writes `state` and the guest memory `regions` (whose layouts must equal state.memory) as the
// snapshot directory `dir`, which must not exist. Validates `state` first.
MemoryWriteStats write_snapshot_dir(const std::string& dir, const SnapshotState& state,
                                    std::span<const RegionContents> regions,
                                    const SnapshotWriteOptions& options = {});

struct SnapshotReport {
  StateFileInfo format;
  std::string creator_version;
  std::string cpu_vendor;
  size_t vcpus = 0;
  size_t regions = 0;
  size_t devices = 0;
  uint64_t guest_memory_bytes = 0;  // sum of region sizes
  uint64_t memory_file_bytes = 0;   // logical size
  uint64_t memory_disk_bytes = 0;   // allocated on disk (st_blocks): zero pages are holes
  std::string id;
  std::string parent_dir, parent_id;  // a diff's parent; empty for a full snapshot

  std::string to_string() const;  // a few human-readable lines for `wisp snapshot verify`
};

// Checks a snapshot directory completely: the state file's frame, checksum and schema, the
// state's values, and the memory file against the layout. Throws wisp::Error naming the file
// and the problem.
SnapshotReport verify_snapshot(const std::string& dir);

}  // namespace wisp::snapshot
