// The control channel's requests and answers as plain C++ values (mirrors of api/vmm.capnp's
// structs), shared by the VMM side (vmm/control/) and the client (api/vmm_client.h), so neither
// callers nor the VMM's service code depend on generated Cap'n Proto types.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace wisp::control {

struct SnapshotRequest {
  std::string dir;  // the snapshot's final directory, for messages only
  bool diff = false;
  // The two files to write, created by the manager (snapshot/snapshot_dir.h NewSnapshotDir):
  // regular, empty, open for writing. Borrowed: the caller keeps them open during the call.
  // The client sends each as a FileHandle carrying a copy of the descriptor (none when < 0,
  // which the VMM refuses); the VMM side hands its service the copies it received and checked.
  int state_fd = -1;
  int memory_fd = -1;
};

struct SnapshotReport {
  std::string id;
  bool diff = false;
  double pause_ms = 0, state_ms = 0, memory_ms = 0, total_ms = 0;
  uint64_t memory_file_bytes = 0;
  uint64_t memory_disk_bytes = 0;
  uint64_t pages_written = 0;
  uint64_t pages_in_layer = 0;
};

// api/vmm.capnp VcpuCounters: KVM's counters of the VM's vCPUs, summed.
struct VcpuCounters {
  bool available = false;
  uint64_t exits = 0, nested_page_faults = 0, pages_mapped = 0, halt_exits = 0, mmio_exits = 0,
           io_exits = 0;
};

struct MemoryStats {
  uint64_t resident_pages = 0;
  uint64_t written_pages = 0;
  uint64_t pages = 0;
  VcpuCounters vcpu;  // read in the same call, so one stage boundary gets both
};

// What a VMM does for its control channel's calls. Implemented by the VMM process (it joins
// the machine and the snapshot writer); every method runs on the VMM's event-loop thread and
// throws wisp::Error with a message for the caller when it cannot do what was asked.
class Service {
 public:
  virtual ~Service() = default;
  // `hold_clock`: api/vmm.capnp pause's holdClock.
  virtual void pause(bool hold_clock) = 0;
  virtual void resume() = 0;
  virtual SnapshotReport snapshot(const SnapshotRequest& request) = 0;
  virtual MemoryStats stats() = 0;
  // Runs of resident guest pages, (first page, count), sorted (api/vmm.capnp residentRanges).
  // A service without guest memory to show keeps this default, which refuses.
  virtual std::vector<std::pair<uint64_t, uint64_t>> resident_ranges() {
    throw Error("this VMM has no guest memory to list");
  }
  // The same for the pages written since a restore (api/vmm.capnp writtenRanges).
  virtual std::vector<std::pair<uint64_t, uint64_t>> written_ranges() {
    throw Error("this VMM has no guest memory to list");
  }
  // Makes `ranges` (first page, count) private copies now; returns the pages (api/vmm.capnp
  // populateWritable). Throws Error naming a range outside guest memory.
  virtual uint64_t populate_writable(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
    (void)ranges;
    throw Error("this VMM has no guest memory to populate");
  }
};

}  // namespace wisp::control
