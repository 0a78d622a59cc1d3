// exec mode: one sandboxed process per invocation. The payload goes to its stdin (written
// from the event loop, never blocking it), stdout is the result, and a wall-clock timeout or
// the stdout cap kills the whole tree through its cgroup.
#pragma once

#include <kj/async.h>
#include <kj/common.h>

#include "agent/invocation.h"

namespace wisp::agent {

// `payload` must stay valid until the returned promise resolves or is dropped. Throws (in the
// promise) only when the agent cannot start the process at all; handler failures are results.
kj::Promise<InvocationResult> run_exec_invocation(AgentServices& services,
                                                  const HandlerConfig& config,
                                                  kj::ArrayPtr<const kj::byte> payload,
                                                  uint64_t timeout_ms);

}  // namespace wisp::agent
