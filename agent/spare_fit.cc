#include "agent/spare_fit.h"

namespace wisp::agent {

const char* spare_misfit(const SandboxSpec& made_for, const SandboxSpec& call,
                         const CgroupLimits& call_limits) {
  if (made_for.argv != call.argv) return "argv";
  if (made_for.env != call.env) return "env";
  if (made_for.network != call.network) return "network";
  if (made_for.cpu_time_ms != call.cpu_time_ms) return "cpuTimeMs";
  if (made_for.open_files != call.open_files) return "openFiles";
  // Its root is moved in and its user, groups and directory are set before it waits.
  if (made_for.root_device != call.root_device) return "rootDevice";
  if (made_for.cwd != call.cwd) return "cwd";
  if (made_for.uid != call.uid || made_for.gid != call.gid) return "uid/gid";
  if (made_for.groups != call.groups) return "additionalGids";
  // The /tmp tmpfs is sized from memory.max when the mount namespace is made.
  if (made_for.scratch_bytes != call.scratch_bytes) return "memoryBytes";
  // A fresh sandbox forks its handler under pids.max: with a limit of 1 that fork fails. The
  // spare's fork happened already, so such a call must take the fresh path to fail the same.
  if (call_limits.pids < 2) return "pids";
  return nullptr;
}

}  // namespace wisp::agent
