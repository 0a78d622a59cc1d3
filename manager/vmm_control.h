// The manager's side of a running VMM's control channel (`wisp-vmm run|restore
// --control-socket PATH`): typed calls in, plain results out. The wire protocol (today one
// text line each way, vmm/main/control_handler.h) is known to this file and nowhere else in
// the manager, so replacing it touches only vmm_control.cc.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "base/unique_fd.h"

namespace wisp::manager {

// What the VMM reports for a snapshot it has written.
struct SnapshotInfo {
  std::string id;
  double pause_ms = 0;             // until every vCPU was out of KVM_RUN
  double state_ms = 0;             // collecting and writing the state file
  double memory_ms = 0;            // writing the memory file
  double total_ms = 0;             // pause to resume
  uint64_t memory_file_bytes = 0;  // logical size
  uint64_t memory_disk_bytes = 0;  // allocated (sparse)
  uint64_t pages_written = 0;      // pages of data in the memory file
  uint64_t pages_in_layer = 0;     // a diff: pages this layer covers
  bool diff = false;
};

// Guest memory as the VMM sees it.
struct VmmStats {
  uint64_t resident_pages = 0;  // guest pages the VM has mapped (read or written)
  uint64_t written_pages = 0;   // of a restored VM: pages copied on write
  uint64_t pages = 0;           // guest RAM in pages
};

// One connection to one VMM's control socket. Calls are synchronous; one thread at a time.
class VmmControl {
 public:
  // Connects to the socket at `path`. Throws Error naming it when no VMM listens there.
  static VmmControl connect(const std::string& path);

  void ping();
  // Stops every vCPU (returns once they are out of KVM_RUN); resume() lets them go on.
  void pause();
  void resume();
  // Pauses the VM, writes the snapshot directory `dir` (absolute; it must not exist) and
  // resumes it unless it was paused before. `diff`: only the pages written since the VM was
  // restored (a VM that was booted cannot make one). Throws Error with the VMM's reason; the VM
  // keeps running after a failed snapshot.
  SnapshotInfo snapshot(const std::string& dir, bool diff);
  VmmStats stats();

 private:
  VmmControl(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  // Sends one command; returns the reply after "ok" (its JSON, or ""). Throws Error.
  std::string request(const std::string& command);

  std::string path_;
  UniqueFd fd_;
  std::string pending_;  // bytes read past the last reply line
};

}  // namespace wisp::manager
