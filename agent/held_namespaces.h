// A handler sandbox's network, IPC and mount namespaces, held open so that they outlive its
// processes (sandbox.h makes them; exec_invocation.cc and spare_sandbox.h hold them).
//
// The kernel tears a namespace down when its last reference goes. Without a holder, the
// handler's exit does it: the mount and IPC namespaces inside the exit (unmounting the
// sandbox's tmpfs mounts, retiring the IPC sysctls), the network one in a kworker right after
// (every pernet subsystem's exit). All of it ran before the agent could send the call's result
// on the guest's one vCPU. An exec call holds them from the sandbox's start and drops them once
// its result is out; a pool clone is gone by then and never spends the time.
#pragma once

#include <kj/io.h>
#include <sys/types.h>

namespace wisp::agent {

struct HeldNamespaces {
  kj::AutoCloseFd net, ipc, mnt;
};

// Opens /proc/PID/ns/{net,ipc,mnt}. One that cannot be opened (the process ended first) stays
// closed: there is nothing left to hold.
HeldNamespaces hold_namespaces(pid_t pid);

}  // namespace wisp::agent
