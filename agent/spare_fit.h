// Which exec calls may run in a held sandbox (spare_sandbox.h): the call must want the sandbox
// the spare was made for, in everything fixed once it exists (argv, env, network namespace,
// rlimits, the /tmp size, the root, user and working directory), so that the spare is
// indistinguishable from a fresh one. The cgroup's memory.max and pids.max are not fixed: the agent
// rewrites them before the go.
#pragma once

#include "agent/cgroup.h"
#include "agent/sandbox.h"

namespace wisp::agent {

// nullptr when a call with `call` and `call_limits` fits a spare made for `made_for`, else
// what differs (for the agent's log).
const char* spare_misfit(const SandboxSpec& made_for, const SandboxSpec& call,
                         const CgroupLimits& call_limits);

}  // namespace wisp::agent
