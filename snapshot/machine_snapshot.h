// Save and restore of a whole microVM, between vmm/'s plain MachineState + GuestMemory and a
// snapshot directory. The only place that joins the two: vmm/ never sees the file format, and
// the format code below this sees States, never a live device.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/snapshot_state.h"
#include "vmm/kvm/cpu_types.h"
#include "vmm/machine/machine_state.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/block/block_state.h"

namespace wisp::snapshot {

struct SaveOptions {
  // A diff snapshot: only pages written since the VM was restored from `parent_dir` (whose
  // snapshot id is `parent_id`) are stored; the rest come from the parent.
  bool diff = false;
  std::string parent_dir;
  std::string parent_id;
  std::string creator_version;
};

struct SaveResult {
  std::string id;
  uint64_t memory_file_bytes = 0;  // logical size
  uint64_t memory_disk_bytes = 0;  // allocated (sparse)
  uint64_t pages_written = 0;      // pages of data in the memory file
  uint64_t pages_in_layer = 0;     // diff: pages this layer covers (data or zero)
  double state_ms = 0, memory_ms = 0;
};

// Writes `state` and `memory` into `files` (a snapshot directory's state and memory files,
// made by the manager with NewSnapshotDir, which commits them), recording each device's host
// resource as it is now (record_identity). The machine must be paused. Throws Error naming the
// file and the problem.
SaveResult save_machine_snapshot(const SnapshotFiles& files, const MachineState& state,
                                 const GuestMemory& memory, const SaveOptions& options);

struct LoadedSnapshot {
  MachineState state;
  GuestMemory memory;  // the memory file(s) mapped MAP_PRIVATE, diff layers over their parents
  std::string id;
  uint32_t layers = 1;  // 1 for a full snapshot, 1 + diffs above it
};

// What this host would give vCPU 0 of a machine with `vcpus` vCPUs of CPU model `model`
// (vmm/arch's vcpu_cpuid over KVM's supported CPUID), to compare with the snapshot's: a
// portable snapshot is compared with this host's baseline CPUID, not its full one.
using HostCpuid = std::function<CpuidEntries(uint32_t vcpus, CpuModel model)>;

// A snapshot's layers, top first, as their state files say: each validated and each parent
// the one its child was made on, with the same machine. No memory file opened yet.
struct SnapshotChain {
  std::vector<std::string> dirs;
  std::vector<SnapshotState> states;
  // The base layer's memory file opened already (by a manager: the same bytes on a tmpfs of
  // 2 MiB pages, manager/huge_page_layer.h), checked like the file it stands for; invalid: the
  // base directory's own is opened.
  UniqueFd base_memory;
};
// Reads the state file of `dir` and of each parent, and applies what a snapshot may name
// (snapshot_trust.h): parents in the diff's own directory; each drive given by the caller
// (`drives`, in slot order) or inside `dir`, a regular file with the recorded identity. The top
// layer's drive paths become the admitted ones. Throws Error naming the file and the rule.
SnapshotChain read_snapshot_chain(const std::string& dir,
                                  const std::vector<BlockSpec>& drives = {});

// Reads, validates and maps the snapshot at `dir` (following a diff's parents). Refuses a
// snapshot from another CPU feature set, a device resource that changed (check_identity), a
// memory file that does not match, a parent that is not the one the diff was made on. Throws
// Error naming the file and what is wrong. The state's devices are the ones to rebuild, in
// order; a caller gives each its per-process resources (a vsock's socket path) before
// Machine::restore.
LoadedSnapshot load_machine_snapshot(const std::string& dir, const HostCpuid& host_cpuid);
// The same for a chain read already (read_snapshot_chain): its memory files are opened now.
LoadedSnapshot load_machine_snapshot(SnapshotChain chain, const HostCpuid& host_cpuid);

// One layer of a snapshot as a manager hands it to a standby VMM (wisp-vmm standby): its state
// file and memory file, open read-only. The VMM sees no path: the manager opened them under the
// rules of snapshot_trust.h.
struct SnapshotLayerFds {
  UniqueFd state;
  UniqueFd memory;
};
// Like load_machine_snapshot for descriptors, top layer first: each state file read as
// untrusted (frame, checksum, schema, values), the chain checked as read_snapshot_chain checks
// it (every layer but the last a diff, each made on the next one, same machine) and the memory
// mapped. `name` names the source in messages. A drive's identity is not checked here: its path
// means nothing to the caller, who checked the images it hands over (snapshot_trust.h).
// Throws Error.
LoadedSnapshot load_machine_snapshot(std::vector<SnapshotLayerFds> layers,
                                     const HostCpuid& host_cpuid, const std::string& name);

// A checksum of the guest memory a snapshot restores to (diff layers applied): CRC-64 over
// (page index, bytes) of every non-zero page. Equal for a diff and a full snapshot of one
// paused VM. Needs no KVM. Throws Error like load_machine_snapshot.
uint64_t memory_digest(const std::string& dir);

}  // namespace wisp::snapshot
