// Plain types shared by the two handler modes (exec_invocation.h, worker.h) and the RPC layer,
// which converts them from and to api/agent.capnp.
#pragma once

#include <kj/async-io.h>
#include <kj/time.h>
#include <kj/timer.h>

#include <cstdint>
#include <string>

#include "agent/cgroup.h"
#include "agent/child_reaper.h"
#include "agent/output_capture.h"
#include "agent/sandbox.h"
#include "agent/sandbox_remains.h"

namespace wisp::agent {

struct HandlerConfig {
  std::string name;
  SandboxSpec sandbox;
  CgroupLimits cgroup;
  uint64_t max_output_bytes = 0;
};

struct InvocationResult {
  CapturedOutput stdout_data;
  CapturedOutput stderr_data;
  bool signaled = false;  // true: `status` is a signal number, else an exit code
  int status = 0;
  bool timed_out = false;
  std::string limit_exceeded;  // "", "memory", "pids", "output"
  uint64_t duration_ns = 0;
  uint64_t peak_memory_bytes = 0;
  uint64_t cpu_time_ns = 0;
  std::string error;
  bool preforked = false;  // exec mode: ran in the spare sandbox (spare_sandbox.h)
};

// A call's time limit on `timer`, counted from the clock read now. kj's afterDelay counts from
// the loop's time, which it takes only when it waits for events: in a guest resumed from a
// pause, calls that arrived meanwhile can be handled before the loop waits again, and a limit
// counted from its time would count the pause too (seen in the nested testbed: an invoke sent
// with the reseed of a warm clone paused 15 s "timed out" at once, the loop's time 16 s old).
inline kj::Promise<void> after_from_now(kj::Timer& timer, kj::Duration delay) {
  return timer.atTime(kj::systemPreciseMonotonicClock().now() + delay);
}

// How long after an exec call's result the agent does the work that can wait for it (the
// sandbox's teardown, sandbox_remains.h; the next spare, spare_sandbox.h): long enough for the
// result to leave the guest first (its vsock send runs in a kworker after the agent's write) on
// the guest's one vCPU. A pool clone is destroyed before then and never spends the time.
inline constexpr kj::Duration kAfterResultDelay = 50 * kj::MILLISECONDS;

// What handler code needs from the agent: the event loop's I/O and timer, the reaper, and a
// task set for clean-ups that outlive a call.
struct AgentServices {
  kj::LowLevelAsyncIoProvider& io;
  kj::Timer& timer;
  ChildReaper& reaper;
  kj::TaskSet& background;
  SandboxRemains& remains;  // exec calls' sandboxes, torn down after their results
  uint64_t next_id = 0;

  // A fresh cgroup name such as "exec-17".
  std::string next_cgroup_name(const char* kind) {
    return std::string(kind) + "-" + std::to_string(++next_id);
  }
};

// Reads the handler's wait status from the sandbox's status pipe (sandbox.h); nullptr when
// the handler never started.
kj::Promise<kj::Maybe<int>> read_handler_status(kj::AsyncInputStream& status_pipe);

// Fills status/signaled from the handler's wait status, or from the namespace init's exit
// when there is none (the sandbox failed before the handler ran).
void apply_exit(const ExitInfo& init_exit, kj::Maybe<int> handler_status, InvocationResult& result);
// Fills memory and CPU figures from the cgroup (falling back to the rusage) and names the
// limit that ended the run, unless one is already set.
void apply_stats(const CgroupStats& stats, const ExitInfo* exit, InvocationResult& result);

}  // namespace wisp::agent
