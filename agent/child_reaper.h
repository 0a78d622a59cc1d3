// PID 1 reaps every process that ends up as its child (handlers, and orphans re-parented to
// it); callers that spawned a process can wait for that pid's exit through a promise.
#pragma once

#include <kj/async-unix.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <map>

namespace wisp::agent {

struct ExitInfo {
  int wait_status = 0;  // as from waitpid: WIFEXITED/WIFSIGNALED apply
  rusage usage{};       // of the process and the descendants it waited for
};

class ChildReaper {
 public:
  // SIGCHLD must have been captured (UnixEventPort::captureSignal) before the event port
  // was created.
  explicit ChildReaper(kj::UnixEventPort& port);
  KJ_DISALLOW_COPY(ChildReaper);

  // Resolves when `pid` (a child of this process) has exited and been reaped. Call it right
  // after spawning, before returning to the event loop.
  kj::Promise<ExitInfo> wait_for_exit(pid_t pid);

  // Runs forever: on each SIGCHLD, reaps all exited children.
  kj::Promise<void> run();

 private:
  void reap_all();

  kj::UnixEventPort& port_;
  std::map<pid_t, kj::Own<kj::PromiseFulfiller<ExitInfo>>> waiting_;
};

}  // namespace wisp::agent
