// Re-making a worker template's VM snapshot from its CRIU image (issue 17; what `wisp template
// rebuild` does, and what `wisp invoke` starts in the background after it had to fall back to
// the image): the template's guest booted cold on this host, its worker restored from the
// image (its initialisation does not run again), a fresh VM snapshot taken, published as a new
// generation of the template by an atomic swap. The CRIU image is kept (hard links into the
// new generation). On any failure the template stays as it was.
//
// One rebuild of a template at a time: templates/.NAME.rebuild-lock is held (flock) for the
// whole rebuild; a second one is refused (or, from invoke's background, skipped).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "manager/agent_vm.h"
#include "manager/cancellation.h"
#include "manager/template_store.h"

namespace wisp::manager {

struct RebuildOptions {
  // Rebuild only while templates/NAME is still this generation directory (OpenTemplate::dir):
  // invoke's background re-make names the generation it found unfit, so a template rebuilt
  // or re-created meanwhile is left alone. "": whatever the current one is.
  std::string only_generation;
  // A rebuild of NAME already running: true skips quietly (TemplateRebuilt::skipped), false
  // throws Error.
  bool skip_if_busy = false;
  JailFlags jail;  // the VM's jail
  std::chrono::milliseconds boot_timeout{120000};
  uint64_t start_ns = 0;  // CLOCK_MONOTONIC the timings count from (0: the call)
};

struct TemplateRebuilt {
  std::string skipped;  // why nothing was done ("" when rebuilt)
  TemplateInfo info;    // the new generation's record
  uint64_t criu_image_bytes = 0;
  // Milliseconds from start_ns's stages: the cold boot, restoreWorker as the host saw it (of
  // which criu restore in the guest: criu_guest_ms), the snapshot (pause + save).
  double boot_ms = 0, criu_ms = 0, criu_guest_ms = 0, snapshot_ms = 0, total_ms = 0;
  uint64_t working_set_pages = 0;  // recorded for the new snapshot (0: none)
};

// Throws Error: no such template, not a worker, no or a damaged CRIU image, no boot record,
// the restore or the snapshot failed (VmFailed with the VMM's log when the VM did).
TemplateRebuilt rebuild_template(const std::string& name, const RebuildOptions& options,
                                 const Progress& progress, Cancellation* cancellation = nullptr);

// templates/.NAME.rebuild.log: where invoke's background re-make writes its output.
std::string rebuild_log_path(const std::string& name);

}  // namespace wisp::manager
