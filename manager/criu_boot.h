// A template's worker started from its CRIU image rather than its VM snapshot (issue 17): the
// template's guest booted cold (its kernel, rootfs, drives, network, machine size, and the
// baseline CPU if it is portable), the image streamed to the agent's restoreWorker, the
// restored worker warm. Used where the VM snapshot does not fit this host (manager/invoke.h's
// fallback) and by `wisp template rebuild` (manager/template_rebuild.h).
#pragma once

#include <chrono>
#include <cstdint>
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

struct CriuStart {
  std::unique_ptr<AgentVm> vm;
  std::unique_ptr<client::AgentClient> agent;  // connected, the worker restored (not resumed)
  uint64_t image_bytes = 0;
  // Milliseconds: the cold boot (spawn to the agent's answer), and restoreWorker as the host
  // saw it (the image's transfer, the agent's unpacking and criu restore), of which criu
  // restore in the guest took criu_guest_ms and the unpacking unpack_ms.
  // upload_ms: the image's transfer to the agent.
  double boot_ms = 0, criu_ms = 0, criu_guest_ms = 0, unpack_ms = 0, upload_ms = 0;
};

// Boots template `t`'s guest (VMM jailed by `jail`, with a control socket if `control`) and
// restores its worker from the CRIU image in `snapshot_dir` (criu_image_store.h), checked as
// it is sent: a size or CRC-64 that does not match its .sum stops it before the agent restores
// anything. `cancellation` (may be null) kills the VM. Throws Error (no boot record, no or a
// damaged image, the agent's refusal) or VmFailed (the VM did not boot or its agent broke).
CriuStart start_from_criu_image(const TemplateInfo& t, const std::string& snapshot_dir,
                                const JailFlags& jail, bool control, Cancellation* cancellation,
                                std::chrono::milliseconds boot_timeout);

}  // namespace wisp::manager
