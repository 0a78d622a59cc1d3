// Recording a template's working set (issue 13): one probe clone is restored from the new
// snapshot exactly as `wisp invoke` restores one (no working set yet, so nothing prefetched),
// makes a clone's first call (the warm-up payload), and its VMM lists the guest pages it then
// has mapped: what every clone touches from its restore to its first result. Clones of the
// template load these pages before their vCPUs run (wisp-vmm restore, snapshot/working_set.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "api/agent_client.h"
#include "api/jail_flags.h"
#include "manager/cancellation.h"
#include "manager/template_store.h"

namespace wisp::manager {

struct WorkingSetProbe {
  client::InvokeResult result;  // the probe call's: the caller decides whether it succeeded
  uint64_t memory_pages = 0;    // pages of the clone's guest memory
  std::vector<std::pair<uint64_t, uint64_t>> ranges;   // resident after the call, sorted runs
  uint64_t pages = 0;                                  // their sum
  std::vector<std::pair<uint64_t, uint64_t>> written;  // of those, the ones it wrote
  uint64_t written_pages = 0;
  double ms = 0;  // restore to resident list
};

// Restores a probe clone of `snapshot_dir` for template `info` (its drives, mode and handler),
// invokes it once with `payload` and lists its resident pages; the clone is destroyed. Throws
// VmFailed (with the VMM's log) when the clone fails, Error when the call cannot be made; a
// handler that fails is in `result`. `cancellation` (may be null) kills the clone.
WorkingSetProbe probe_working_set(const std::string& snapshot_dir, const TemplateInfo& info,
                                  const std::string& payload, const JailFlags& jail,
                                  Cancellation* cancellation);

// Why a call failed ("timed out", "exited with status 3: <stderr>", ...), or "" if it did not.
std::string describe_call_failure(const client::InvokeResult& r);

// probe_working_set, then the result written as `snapshot_dir`'s working set, and the pages
// it wrote as its written set (snapshot/working_set.h). Throws Error "working-set probe: ..." when
// the clone or its call fails.
WorkingSetProbe record_working_set(const std::string& snapshot_dir, const TemplateInfo& info,
                                   const std::string& payload, const JailFlags& jail,
                                   Cancellation* cancellation);

// The working set recorded in `snapshot_dir` as guest-physical page ranges (first page,
// count), for a warm clone's guest to read ahead of its calls (agent.touchMemory); none when
// the snapshot has no working set. Throws Error naming the file when it is damaged.
std::vector<std::pair<uint64_t, uint64_t>> working_set_guest_ranges(
    const std::string& snapshot_dir);

}  // namespace wisp::manager
