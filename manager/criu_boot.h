// A template's worker started from its CRIU image rather than its VM snapshot (issue 17): the
// template's guest booted cold (its kernel, rootfs, drives, network, machine size, and the
// baseline CPU if it is portable), the image streamed to the agent's restoreWorker, the
// restored worker warm. Used where the VM snapshot does not fit this host (manager/invoke.h's
// fallback) and by `wisp template rebuild` (manager/template_rebuild.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "api/agent_client.h"
#include "manager/agent_vm.h"
#include "manager/cancellation.h"
#include "manager/template_store.h"
#include "manager/vm_spec.h"

namespace wisp::manager {

// The machine template `t` was made on, to boot its guest again: what template.info records
// (boot_*, drives, net, mem_mib, vcpus, portable). Throws Error naming the template when it
// has no boot record (made by an older wisp) or is not a worker template.
VmSpec template_boot_spec(const TemplateInfo& t);

// How the image reached the agent.
enum class CriuSource {
  kDrive,   // the read-only drive (criu_drive.h), restoreWorkerFromDrive
  kUpload,  // the archive over vsock, restoreWorker (no drive, or an agent without the method)
};
const char* criu_source_name(CriuSource source);  // "drive", "upload"

struct CriuStart {
  std::unique_ptr<AgentVm> vm;
  std::unique_ptr<client::AgentClient> agent;  // connected, the worker restored (not resumed)
  uint64_t image_bytes = 0;
  CriuSource source = CriuSource::kUpload;
  // Milliseconds: the cold boot (spawn to the agent's answer; with the drive made again
  // first, drive_ms, when it had to be), and the restore as the host saw it, of which criu
  // restore in the guest took criu_guest_ms. Upload: the image's transfer (upload_ms) and the
  // agent's unpacking (unpack_ms). Drive: mounting it in the guest (mount_ms).
  double boot_ms = 0, criu_ms = 0, criu_guest_ms = 0, unpack_ms = 0, upload_ms = 0, mount_ms = 0,
         drive_ms = 0;
  bool drive_remade = false;  // the drive was missing or did not match its record
};

// Boots template `t`'s guest (VMM jailed by `jail`, with a control socket if `control`) and
// restores its worker from the CRIU image in `snapshot_dir` (criu_image_store.h). With its
// drive (criu_drive.h: made again from the archive first when missing or not matching its
// record) attached read-only after the template's own drives, the agent restores from that;
// when the drive cannot be made, or the agent does not know restoreWorkerFromDrive (an older
// template's), the archive is sent instead, checked as it is sent: a size or CRC-64 that does
// not match its .sum stops it before the agent restores anything. `log` (may be empty) gets a
// line for each of those turns. `cancellation` (may be null) kills the VM. Throws Error (no
// boot record, no or a damaged image, the agent's refusal) or VmFailed (the VM did not boot or
// its agent broke).
// `use_drive` false: the image is sent even with a drive at hand, for a VM that is to be
// snapshotted (template rebuild): its devices must stay the template's own, or the snapshot
// would name the drive.
CriuStart start_from_criu_image(const TemplateInfo& t, const std::string& snapshot_dir,
                                const JailFlags& jail, bool control, Cancellation* cancellation,
                                std::chrono::milliseconds boot_timeout,
                                const std::function<void(const std::string&)>& log,
                                bool use_drive = true);

}  // namespace wisp::manager
