// A snapshot on disk is a directory holding the state file and the memory file. It is written
// atomically (DESIGN.md rule 7): everything goes into a temp directory next to the target, is
// fsynced, and is renamed into place; a failure or a crash never leaves a directory at the
// target, and a failure removes the temp directory.
//
// The work is split between two processes. The manager owns the directory (NewSnapshotDir:
// create the temp directory and the two files, commit or clean up); the VMM, jailed, sees no
// path and writes into the two descriptors it is handed (write_snapshot_files).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "base/file_io.h"
#include "base/unique_fd.h"
#include "snapshot/memory_file.h"
#include "snapshot/snapshot_state.h"
#include "snapshot/state_file.h"

namespace wisp::snapshot {

constexpr const char* kStateFileName = "state";
constexpr const char* kMemoryFileName = "memory";

// Test hook: called before a step of writing a snapshot ("state", "memory", "sync", "rename");
// may throw.
using StepHook = std::function<void(std::string_view step)>;

// The two files of a snapshot being written: regular, empty, open for reading and writing.
// Borrowed.
struct SnapshotFiles {
  int state_fd = -1;
  int memory_fd = -1;
  std::string dir;  // the snapshot's final directory, naming the files in messages
};

struct SnapshotWriteOptions {
  StepHook before_step;
  // Memory file pages worth reading (nullptr: all); others are written as holes. For a diff
  // snapshot the writer also skips pages outside state.diff.pages.
  const std::vector<bool>* data_pages = nullptr;
};

// Writes `state` and the guest memory `regions` (whose layouts must equal state.memory) into
// `files`, and fsyncs both. Validates `state` first. Creates, renames and opens nothing: this
// is the part a jailed VMM does. Throws wisp::Error naming the file and the fault.
MemoryWriteStats write_snapshot_files(const SnapshotFiles& files, const SnapshotState& state,
                                      std::span<const RegionContents> regions,
                                      const SnapshotWriteOptions& options = {});

// A snapshot directory being made: a temp directory (".BASE.tmp-XXXXXX", locked while in use;
// one a crashed run left is removed by the next NewSnapshotDir of the same target) next to the
// target holding the new, empty
// `state` and `memory` files (0600: guest memory and registers are the guest's secrets), open
// for reading and writing, until commit() renames it to the
// target. Destroyed before that (an error anywhere), it removes the temp directory and its
// files. Belongs to one thread.
class NewSnapshotDir {
 public:
  // `dir` must not exist; its parent must. Throws Error naming the directory.
  explicit NewSnapshotDir(std::string dir);
  ~NewSnapshotDir();
  NewSnapshotDir(const NewSnapshotDir&) = delete;
  NewSnapshotDir& operator=(const NewSnapshotDir&) = delete;

  SnapshotFiles files() const { return {state_.get(), memory_.get(), dir_}; }
  const std::string& temp_dir() const { return tmp_; }

  // Fsyncs the files and the temp directory, renames it to the target (rename_dir_noreplace:
  // never over something that appeared there meanwhile; `how` forces the fallback for NFS
  // and 9p in tests) and fsyncs the parent. `before_step` gets "sync" and "rename". Throws
  // Error; the temp directory is then still removed on destruction.
  void commit(const StepHook& before_step = {}, NoReplace how = NoReplace::kAuto);

 private:
  void remove_temp();

  std::string dir_;
  std::string parent_;
  std::string tmp_;  // "" once committed: nothing left to clean up
  UniqueFd state_;
  UniqueFd memory_;
  UniqueFd lock_;  // the temp directory, locked (base/file_io.h lock_dir)
};

// Writes a whole snapshot directory `dir` (which must not exist) in this process: a
// NewSnapshotDir, write_snapshot_files, commit. For tools and tests; a VM's own snapshot goes
// through the manager and its VMM instead.
MemoryWriteStats write_snapshot_dir(const std::string& dir, const SnapshotState& state,
                                    std::span<const RegionContents> regions,
                                    const SnapshotWriteOptions& options = {});

struct SnapshotReport {
  StateFileInfo format;
  std::string creator_version;
  std::string cpu_vendor;
  bool portable = false;  // the guest ran on the x86-64-v2 baseline CPU (`--portable`)
  size_t vcpus = 0;
  size_t regions = 0;
  size_t devices = 0;
  uint64_t guest_memory_bytes = 0;  // sum of region sizes
  uint64_t memory_file_bytes = 0;   // logical size
  uint64_t memory_disk_bytes = 0;   // allocated on disk (st_blocks): zero pages are holes
  std::string id;
  std::string parent_dir, parent_id;  // a diff's parent; empty for a full snapshot
  int64_t working_set_pages = -1;     // its working-set file's pages; -1: it has none
  size_t working_set_ranges = 0;

  std::string to_string() const;  // a few human-readable lines for `wisp snapshot verify`
};

// Checks a snapshot directory completely: the state file's frame, checksum and schema, the
// state's values, the memory file against the layout, and the working set if there is one. Throws
// wisp::Error naming the file and the problem.
SnapshotReport verify_snapshot(const std::string& dir);

}  // namespace wisp::snapshot
