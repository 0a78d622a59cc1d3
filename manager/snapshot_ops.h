// The raw snapshot operations on one VM (what `wisp snapshot create|verify` do): snapshot a
// running VMM through its control channel, and check a snapshot directory with its diff chain.
// Restoring one is wisp-vmm's job (`wisp-vmm restore`, vmm/main/restore_command.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "api/vmm_control.h"

namespace wisp::client {
class VmmClient;
}  // namespace wisp::client

namespace wisp::manager {

// Snapshots the VM whose VMM listens on `control_socket` into the new directory `dir`
// (relative to the working directory or absolute). `diff`: only the pages written since the
// VM was restored (api/vmm.capnp's Vmm.snapshot). This process creates the directory and its
// files (so they belong to the store's owner, and a jailed VMM that cannot see `dir` can still
// write them: it gets their descriptors), records each drive's digest in the state (the VMM
// cannot open files: snapshot/snapshot_trust.h) and makes it appear atomically; a failure
// leaves nothing. Throws Error with the VMM's reason. `parent_name` (a diff only): the diff's
// parent is recorded as that sibling directory of `dir` rather than where the VM was restored
// from (snapshot/snapshot_trust.h seal_drive_identities).
control::SnapshotReport create_snapshot(const std::string& control_socket, const std::string& dir,
                                        bool diff, const std::string& parent_name = "");
// The same through an open control connection.
control::SnapshotReport create_snapshot(client::VmmClient& vmm, const std::string& dir, bool diff,
                                        const std::string& parent_name = "");

// One verified layer of a snapshot: the directory, a few human-readable lines about it, and
// the parent it is a diff over ("" for a full snapshot).
struct SnapshotLayer {
  std::string dir;
  std::string description;
  std::string parent_dir;
  std::string id;  // the layer's snapshot id
};

// Verifies the snapshot at `dir` completely and then each parent of a diff, checking that
// each parent is the one its child was made on and lies where a parent may
// (snapshot/snapshot_trust.h). `on_layer` gets each layer once it is
// verified, top first. Throws Error naming the file and the fault.
void verify_snapshot_chain(const std::string& dir,
                           const std::function<void(const SnapshotLayer&)>& on_layer);

// A checksum of the guest memory the snapshot at `dir` restores to (diff layers applied):
// equal for a diff and a full snapshot of one paused VM. Throws Error.
uint64_t snapshot_memory_digest(const std::string& dir);

}  // namespace wisp::manager
