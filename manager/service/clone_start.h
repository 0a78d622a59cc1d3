// Starting a clone's VMM: the one step the pool replaces. Today it spawns `wisp-vmm restore`
// with --ready-fd in a runtime directory of its own; with the pool (manager/vmm_pool.h) it
// takes a StandbyVmm and orders the restore: the same ready line, sockets and VmmChild.
//
// Threads: a CloneProcess is made and used on serve's loop thread, and destroyed on the
// Reaper's (the kill waits for the VMM to exit).
#pragma once

#include <kj/async-io.h>

#include <memory>
#include <string>
#include <vector>

#include "api/jail_flags.h"
#include "manager/runtime_dir.h"
#include "manager/vmm_child.h"

namespace wisp::service {

class CloneProcess {
 public:
  // Spawns the VMM restoring `snapshot_dir` with the snapshot's `drives`, with a control
  // socket, jailed by `jail`. Throws wisp::Error when wisp-vmm cannot be started.
  CloneProcess(const std::string& snapshot_dir, const std::vector<std::string>& drives,
               const JailFlags& jail);
  CloneProcess(const CloneProcess&) = delete;
  CloneProcess& operator=(const CloneProcess&) = delete;

  std::string vsock_path() const { return dir_.file("vsock.sock"); }
  std::string control_path() const { return dir_.file("control.sock"); }
  manager::VmmChild& vmm() { return vmm_; }
  // True when a pre-jailed VMM of the pool restored it (Timings.pooled).
  bool pooled() const { return false; }

 private:
  manager::RuntimeDir dir_;  // before vmm_: the VMM dies before its directory goes
  manager::VmmChild vmm_;
};

// Waits on `io`'s loop for the VMM's ready line (returned, without the newline). Fails with a
// kj::Exception carrying the VMM's log tail when it exits first.
kj::Promise<std::string> wait_ready(kj::AsyncIoContext& io, CloneProcess& process);

}  // namespace wisp::service
