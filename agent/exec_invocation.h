// exec mode: one sandboxed process per invocation. The payload goes to its stdin (written
// from the event loop, never blocking it), stdout is the result, and a wall-clock timeout or
// the stdout cap kills the whole tree through its cgroup.
#pragma once

#include <kj/async.h>
#include <kj/common.h>

#include "agent/held_namespaces.h"
#include "agent/invocation.h"

namespace wisp::agent {

// A handler's sandbox as a call gets it: its cgroup, its process and the reaper's promise for
// that process. `preforked`: it was made ahead of the call (spare_sandbox.h) and has just been
// let go.
struct StartedSandbox {
  kj::Own<Cgroup> cgroup;
  SandboxedProcess proc;
  HeldNamespaces namespaces;
  kj::Promise<ExitInfo> exit = nullptr;
  bool preforked = false;
};

// `payload` must stay valid until the returned promise resolves or is dropped. Runs in
// `preforked` when given, else in a sandbox made now. Throws (in the promise) only when the
// agent cannot start the process at all; handler failures are results.
kj::Promise<InvocationResult> run_exec_invocation(AgentServices& services,
                                                  const HandlerConfig& config,
                                                  kj::ArrayPtr<const kj::byte> payload,
                                                  uint64_t timeout_ms,
                                                  kj::Maybe<StartedSandbox> preforked = nullptr);

}  // namespace wisp::agent
