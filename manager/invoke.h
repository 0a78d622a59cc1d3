// One call on a fresh clone of a template (what `wisp invoke` does): restore the template's
// snapshot in a new wisp-vmm, give the clone fresh entropy and the wall clock, invoke its
// handler once, destroy the clone.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "api/agent_client.h"
#include "manager/agent_vm.h"
#include "manager/cancellation.h"
#include "manager/template_store.h"

namespace wisp::manager {

struct InvokeRequest {
  std::string payload;
  std::chrono::milliseconds timeout{30000};  // the handler's wall-clock limit
  bool count_pages = false;  // report pages_touched (asks the clone's VMM before it goes)
  uint64_t start_ns = 0;     // CLOCK_MONOTONIC the timings count from (0: the call)
  JailFlags jail;            // how the clone's VMM is jailed (default: fully)
  Prefetch prefetch = Prefetch::kFull;  // --no-prefetch, --no-prefault
  // Told when the call falls back to the template's CRIU image (may be null).
  std::function<void(const std::string&)> log;
};

// The result and the timings JSON's fields (milliseconds from start_ns).
struct InvokeOutcome {
  client::InvokeResult result;
  double restore_ms = 0;       // until the clone's VMM was rebuilt and about to run
  double jail_ms = 0;          // of which the VMM's jail (0 unjailed)
  double connect_ms = 0;       // from then until the agent accepted the connection
  double reconnect_ms = 0;     // = connect_ms: the fresh entropy and clock go with the invoke
  double invoke_ms = 0;        // the call
  double total_ms = 0;         // start to result
  int64_t pages_touched = -1;  // guest pages the clone mapped (count_pages; -1: unknown)
  // KVM's counters of the clone's vCPUs from restore to result (count_pages; read with
  // pages_touched). The restore stage runs no guest code, so they all belong to reconnect and
  // invoke.
  control::VcpuCounters vcpu;
  // The VM snapshot did not fit this host (why: fallback_reason) and the worker was started
  // from the template's CRIU image instead (manager/criu_boot.h): restore_ms is then the cold
  // boot (boot_ms) and the worker's restore (criu_ms, of which criu_guest_ms was criu restore
  // in the guest), reconnect_ms 0. `generation` is the template generation it came from, for
  // a re-make of its snapshot (manager/template_rebuild.h).
  bool criu_fallback = false;
  std::string fallback_reason, generation;
  // criu_source: how the image reached the agent ("drive" or "upload", criu_boot.h). Of
  // criu_ms: upload, the image's transfer to the agent and the agent's unpacking of it; drive,
  // mounting it in the guest (criu_mount_ms). criu_drive_ms: the drive made again from the
  // archive before the boot (part of boot_ms; 0 when it was fine).
  std::string criu_source;
  double boot_ms = 0, criu_ms = 0, criu_guest_ms = 0, criu_upload_ms = 0, criu_unpack_ms = 0,
         criu_mount_ms = 0, criu_drive_ms = 0;
};

// The agent request that invokes template `t`'s handler with `payload`.
client::InvokeRequest invoke_request_for(const TemplateInfo& t, std::string payload,
                                         std::chrono::milliseconds timeout);

// Whether template `tpl` can be served from its CRIU image when its VM snapshot does not fit:
// a worker template with an image (manager/criu_image_store.h).
bool has_criu_fallback(const OpenTemplate& tpl);

// Why `tpl`'s VM snapshot does not fit this host, asked before a clone's VMM is spawned: for a
// template with a CRIU fallback, what a stat and the state file's header show
// (snapshot_plainly_unfit_reason: no VMM spawned only to refuse it); "" otherwise, and when
// those show nothing (the restore then checks the rest).
std::string snapshot_unfit_before_restore(const OpenTemplate& tpl);

// Why `tpl`'s VM snapshot does not fit this host, asked once its restore failed with
// `failure` (the message, with the VMM's log; `vm_failed`: the VMM itself failed): what
// manager/snapshot_fit.h finds in its files, else the VMM's refusal of another CPU model (the
// line of `failure` that says so). "" when it fits: the failure is another one.
std::string snapshot_unfit_after_failure(const OpenTemplate& tpl, const std::string& failure,
                                         bool vm_failed);

// The call served from `tpl`'s CRIU image (its VM snapshot does not fit: `reason`): the
// template's guest booted cold, the worker restored from the image, reseeded with the call,
// invoked (criu_fallback; said through request.log first). Timings count from
// request.start_ns (0: now). Throws as invoke() does; Error also for a missing, damaged or
// refused image. Blocks for seconds: `wisp serve` runs it on a thread of its own.
InvokeOutcome invoke_from_criu_image(const OpenTemplate& tpl, const InvokeRequest& request,
                                     const std::string& reason,
                                     Cancellation* cancellation = nullptr);

// A worker template whose VM snapshot does not fit this host (manager/snapshot_fit.h: a state
// file this wisp cannot read, a missing or wrong-sized memory file, the VMM's refusal of
// another CPU model) and that has a CRIU image is served from the image instead
// (criu_fallback; said through request.log as "snapshot does not fit this host (REASON);
// falling back to the CRIU image"). Without an image, the restore's own error.
// Throws Error when the template is missing or unreadable, VmFailed (with the VMM's log) when
// the clone fails. A handler that fails is a result, not an exception. `cancellation` (may be
// null) stops it from another thread: the clone is killed, and this throws once it has been
// reaped and its runtime directory removed.
InvokeOutcome invoke(const std::string& template_name, const InvokeRequest& request,
                     Cancellation* cancellation = nullptr);

}  // namespace wisp::manager
