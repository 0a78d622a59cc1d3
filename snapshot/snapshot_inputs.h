// What restoring a snapshot opens on the host: each layer's state and memory file (a diff
// names its parent directory) and the drives its devices use, as read_snapshot_chain admitted
// them (snapshot_trust.h: never a host file the snapshot alone names). A jailed VMM is given
// exactly these inside its root.
#pragma once

#include <string>
#include <vector>

#include "snapshot/machine_snapshot.h"
#include "vmm/virtio/block/block_state.h"
#include "vmm/virtio/net/net_state.h"

namespace wisp::snapshot {

struct SnapshotInputs {
  std::vector<std::string> files;  // state and memory file of each layer, top first
  std::vector<BlockSpec> drives;   // as the top layer's devices describe them
  // The NICs, in slot order: each TAP is opened before the jail (whose network namespace
  // holds none), by the name recorded here unless the caller names another.
  std::vector<NetSpec> nets;
  // The top layer's working set (snapshot/working_set.h) if its directory has one (a regular
  // file, not a symlink), else empty: read after the jail is up, so the jail must expose it.
  std::string working_set;
  // Its written set (the pages the probe clone wrote, the same format), likewise.
  std::string written_set;
  uint64_t mem_bytes = 0;  // the machine's guest RAM
  uint32_t vcpus = 0;
};

// What restoring `chain` (read_snapshot_chain) opens; reads no file (stats the working set's).
SnapshotInputs snapshot_inputs(const SnapshotChain& chain);

}  // namespace wisp::snapshot
