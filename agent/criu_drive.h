// A worker restored from its CRIU image on a read-only drive (issue 17): the host attaches an
// ext4 image of the unpacked image directory (manager/criu_drive.h) as one more virtio-blk
// drive, so nothing is sent over vsock or unpacked in the guest. The agent mounts it read-only
// under kCriuWorkDir (with a 4 MiB readahead, and its files' reads started at once so they
// overlap criu's start), runs the same criu restore as the upload path
// (restore_worker_from_dir) with a writable work directory beside it, and unmounts it once
// criu has ended: the restored worker maps its memory anonymously and holds no file of the
// drive, which the unmount and an exclusive open of the device then confirm.
#pragma once

#include <kj/async.h>

#include <cstdint>
#include <string>

#include "agent/worker.h"

namespace wisp::agent {

// Whether `device` may name a CRIU image drive: "/dev/vdb".."/dev/vdz" (vda is the root
// filesystem; a template has few drives).
bool is_criu_drive_name(const std::string& device);

struct DriveRestore {
  uint64_t restore_ns = 0;  // criu restore
  uint64_t mount_ns = 0;    // mounting the drive (and starting its files' readahead)
};

// Restores worker `config` from the image on block device `device`, hands it to `adopt`.
// Throws kj::Exception naming the device (a bad name, not a block device, the mount refused)
// or with criu's words.
kj::Promise<DriveRestore> restore_worker_from_drive(AgentServices& services, HandlerConfig config,
                                                    const std::string& device,
                                                    kj::Function<void(kj::Own<Worker>)> adopt);

}  // namespace wisp::agent
