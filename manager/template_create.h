// Making a template (what `wisp template create` does): boot a function VM, start its
// handler, warm it up, let it settle, snapshot it into the template store, destroy it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "api/agent_client.h"
#include "manager/agent_vm.h"
#include "manager/cancellation.h"
#include "manager/template_store.h"
#include "manager/vm_spec.h"
#include "manager/vmm_pool.h"

namespace wisp::manager {

struct TemplateSpec {
  std::string name;
  bool rebuild = false;           // replace template `name` if it exists (an atomic swap)
  std::string mode = "exec";      // exec: the handler runs afresh per call; worker: warm worker
  std::vector<std::string> argv;  // the handler command
  std::vector<std::string> env;   // KEY=VALUE
  bool network = false;           // the handler uses the guest's network (its NICs: vm.nets)
  // worker mode: after the warm-up, checkpoint the worker with CRIU into the template
  // (criu_image_store.h); a failed dump is a warning, not a failure. false: --no-criu.
  bool criu_image = true;
  // Invocations before the snapshot. Templates are warm by default (one call); 0: the handler
  // is not called while the template is made, so no probe clone records a working set either.
  uint32_t warmup = 1;
  std::string warmup_payload;
  // exec mode: the handler sandbox's limits, root drive, working directory and user, as its
  // clones' exec calls will ask for them (name, argv, env and network are not read from it):
  // the snapshot's pre-forked sandbox is made so. Warm-up calls do not use it (a template
  // with a container root is made with warmup 0).
  client::Handler handler_sandbox;
  VmSpec vm;  // its mem_bytes and vcpus are recorded in the template (0: 256 MiB, 1 vCPU)
  std::chrono::milliseconds boot_timeout{120000};
  uint64_t start_ns = 0;  // CLOCK_MONOTONIC the timings count from (0: the call)
};

// The template's record and the timings JSON's fields (milliseconds from start_ns).
struct TemplateCreated {
  TemplateInfo info;
  double boot_ms = 0;      // until the agent answered
  double warmup_ms = 0;    // worker start and warm-up calls
  double snapshot_ms = 0;  // pause + save (the VMM's figure)
  // The working set a probe clone recorded (manager/working_set_probe.h): its pages, and the
  // probe's time (restore to the resident list).
  uint64_t working_set_pages = 0;
  double probe_ms = 0;
  // Worker mode: the CRIU image of the warm worker (manager/criu_image_store.h), 0 bytes when
  // the guest could not make one (no criu in it: the agent initramfs; the reason is logged).
  uint64_t criu_image_bytes = 0;
  double criu_dump_ms = 0, criu_ms = 0;
  // Its read-only drive (manager/criu_drive.h): size, and the time to make it. 0: none.
  uint64_t criu_drive_bytes = 0;
  double criu_drive_ms = 0;
};

// The machine create_template boots for `spec`: its defaults (256 MiB, 1 vCPU) filled in, the
// command line never raw.
VmSpec template_vm(const TemplateSpec& spec);

// After the snapshot, one probe clone of it records the template's working set (the pages a
// clone touches up to its first result) into the snapshot directory; a failing probe fails
// the creation with its reason ("working-set probe: ...").
// Throws Error: a bad name or spec, a template of that name, a guest file missing (before
// anything boots), or VmFailed with the VMM's log. Nothing is left in the store on failure.
// `cancellation` (may be null) stops it from another thread: the VM is killed, and this throws
// once it has been reaped and its runtime directory removed.
// `standby` (may be null): a pre-jailed VMM standing by (manager/vmm_pool.h) that boots the VM
// on an order instead of a spawned `wisp-vmm run`: the caller checked that it can
// (StandbyVmm::why_not_boot on template_vm(spec)). If the order fails, the VM is spawned.
TemplateCreated create_template(const TemplateSpec& spec, const Progress& progress,
                                Cancellation* cancellation = nullptr,
                                std::unique_ptr<StandbyVmm> standby = nullptr);

}  // namespace wisp::manager
