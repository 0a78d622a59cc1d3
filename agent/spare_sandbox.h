// exec mode's pre-forked sandbox: the agent keeps one handler sandbox set up ahead of its call
// (sandbox.h, held: namespaces, cgroup, mounts, rlimits, uid and capability drop, seccomp all
// done, the handler process blocked just before its execve). A call it fits (spare_fit.h)
// takes it: the agent writes the call's cgroup limits, sends the go, and the call runs as a
// fresh one would (exec_invocation.h) without paying for the set-up. A template's snapshot
// holds one (Agent.prepareSnapshot's `spare`), so a clone's first call only hands it its
// payload.
//
// A spare that dies while waiting (OOM, killed) is noticed through the reaper and the next
// call takes the fresh path; the agent makes the next spare after a call's reply.
#pragma once

#include <kj/async.h>

#include "agent/exec_invocation.h"
#include "agent/held_namespaces.h"
#include "agent/invocation.h"

namespace wisp::agent {

class SpareSandbox {
 public:
  // Spawns the held sandbox for `config`. Throws kj::Exception when the agent cannot (cgroup,
  // pipes, clone3).
  SpareSandbox(AgentServices& services, HandlerConfig config);
  // Not taken: kills the tree and removes its cgroup once the reaper has it.
  ~SpareSandbox();
  KJ_DISALLOW_COPY(SpareSandbox);

  const HandlerConfig& config() const { return config_; }
  // Waiting for its go (it said so on the go socket and has not died since).
  bool ready() const { return ready_ && !dead_; }
  bool dead() const { return dead_; }
  // Died before it was ready: its set-up failed.
  bool failed() const { return dead_ && !ready_; }
  // Resolves once it is ready or dead (never rejects).
  kj::Promise<void> settled() { return settled_.addBranch(); }

  // Hands the sandbox to a call: sets the cgroup's limits to `limits` and lets the handler
  // exec. Only when ready(); afterwards this object owns nothing. nullptr when the handler
  // turns out to have died meanwhile (then dead()).
  kj::Maybe<StartedSandbox> take(const CgroupLimits& limits);

 private:
  void settle();

  AgentServices& services_;
  HandlerConfig config_;
  kj::Own<Cgroup> cgroup_;
  SandboxedProcess proc_;
  HeldNamespaces namespaces_;  // the call that takes it drops them after its result
  kj::ForkedPromise<ExitInfo> exit_;
  kj::Own<kj::AsyncIoStream> go_;
  char ready_byte_ = 0;
  bool ready_ = false;
  bool dead_ = false;
  bool exited_ = false;  // reaped
  bool taken_ = false;
  kj::PromiseFulfillerPair<void> settled_paf_ = kj::newPromiseAndFulfiller<void>();
  kj::ForkedPromise<void> settled_;
  kj::Promise<void> watch_ready_ = nullptr;
  kj::Promise<void> watch_exit_ = nullptr;
};

}  // namespace wisp::agent
