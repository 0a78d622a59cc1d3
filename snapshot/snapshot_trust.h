// What a snapshot may name on the host (DESIGN.md rule 9: a snapshot is data, never authority).
// A state file is read as untrusted input: whoever can write one must not get the guest, or the
// VMM, at a host file the caller did not hand over. The rule, applied at restore before the
// jail is built (it decides what the jail exposes):
//
//   drives   Each drive of the snapshot (in slot order: /dev/vda first) is either given by the
//            caller at restore (`wisp snapshot restore --drive PATH[,ro]`, the k-th given drive
//            standing for the snapshot's k-th; a template's drives are the ones it was created
//            with, kept in its checksummed template.info), or lies inside the snapshot's own
//            directory. Its path is resolved (symlinks followed) before that test. It must be a
//            regular file: a block device, device node, FIFO, socket or directory is refused.
//            And it must be the image the snapshot was taken with: same size, modification time
//            and digest of its first and last 4 KiB. Device and inode numbers are not part of
//            the identity: they change when a store is copied to another node.
//   parents  A diff's parent is the snapshot with the recorded id in the diff's own directory:
//            the recorded parent path is a name in that directory, or an absolute path whose
//            resolved directory is the diff's. A parent anywhere else is refused.
//
// Every refusal is a wisp::Error naming the state file, the path and the rule broken.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "snapshot/machine_snapshot.h"
#include "vmm/virtio/block/block_state.h"

namespace wisp::snapshot {

// Bytes at each end of a drive image that its digest covers.
constexpr uint64_t kDriveDigestBytes = 4096;

// Size, modification time and digest of a drive image.
struct DriveIdentity {
  uint64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  uint64_t digest = 0;
};

// Opens `path` read-only without following a symlink at its last component and without
// blocking on a FIFO. Throws Error naming `path` unless it is a regular file.
UniqueFd open_drive_image(const std::string& path);

// The identity of the image at `path` (open_drive_image, then its two ends). Throws Error.
DriveIdentity identify_drive(const std::string& path);

// At snapshot time, in the process that owns the snapshot directory (the VMM that wrote the
// state cannot open files): reads the state file `state_fd` (open read-write), and records
// each drive's digest. A drive that is no longer the image the VMM described (size or
// modification time) is an Error: it changed while the snapshot was taken. With `dir` (the
// snapshot's final directory), a diff whose parent is not where restore would accept it
// (parent_snapshot_dir) is an Error too, rather than a snapshot that can never be restored.
// `state_path` names the file in messages. `parent_name` (a diff only): the recorded parent
// becomes that plain name, a sibling of `dir` (the VMM records where it was restored from,
// which a copy of the parent next to the diff replaces: manager/template_fork.h). Rewrites and
// fsyncs the file only when it has drives or a parent to rename.
void seal_drive_identities(int state_fd, const std::string& state_path, const std::string& dir = "",
                           const std::string& parent_name = "");

// The directory of a diff's parent by the rule above. `child_dir` is the diff's directory
// (resolved), `recorded` its state's diff.parent_dir, `child_file` names the state file in
// messages. Throws Error naming the rule.
std::string parent_snapshot_dir(const std::string& child_dir, const std::string& recorded,
                                const std::string& child_file);

// Applies the drive rule to the top layer of `chain`: each drive's path becomes the one the
// caller gave (`supplied`, in slot order; read_only must agree with the snapshot's) or its own
// resolved path inside chain.dirs.front(), after its identity is checked. Throws Error naming
// the rule.
void admit_drives(SnapshotChain& chain, const std::vector<BlockSpec>& supplied);

// The caller's drives for admit_drives, as `--drive` takes them ("PATH[,ro]", parse_drive_spec).
std::vector<BlockSpec> supplied_drives(const std::vector<std::string>& specs);

// A drive admit_drives admitted, opened in the mode it is attached with (for a VMM whose jail
// holds no path to it), without following a symlink: still a regular file with the size and
// modification time admission saw. Throws Error naming the drive.
UniqueFd open_admitted_drive(const BlockSpec& admitted);

}  // namespace wisp::snapshot
