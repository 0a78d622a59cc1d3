// A wisp-vmm child process started by the manager (`wisp exec`, `wisp template create`, `wisp
// invoke`): spawned with its console and stderr in files, optionally reporting "ready" on a
// pipe once restored, and killed and reaped on destruction, so no path out of an operation
// leaves a VM behind.
//
// Threads: one thread owns a VmmChild (spawns, waits, reaps, destroys it); terminate() alone
// may be called from any other thread while it exists (a signal watcher, a service shutdown).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace wisp::manager {

// The wisp-vmm executable the manager runs: the one next to this executable.
std::string vmm_executable();

class VmmChild {
 public:
  // Runs wisp-vmm with `args` (e.g. {"restore", DIR, ...}); stdin and stdout are /dev/null,
  // stderr goes to `log`, and signals start unblocked whatever this process blocks. With
  // `ready_pipe`, the child gets "--ready-fd 3" appended and wait_ready() can be used. It
  // always gets "--parent-fd 4": a pipe whose other end only this object holds, so the VM dies
  // when this process does, however it dies (a pipe, unlike a parent-death signal, does not
  // depend on which thread spawned the child). Throws Error naming the executable.
  VmmChild(const std::vector<std::string>& args, const std::string& log, bool ready_pipe);
  ~VmmChild();
  VmmChild(const VmmChild&) = delete;
  VmmChild& operator=(const VmmChild&) = delete;

  pid_t pid() const { return pid_; }
  // True while the child has not exited (reaps it if it has).
  bool alive();
  // Blocks until the child writes its ready line (returned) or exits/`timeout` passes
  // (throws Error with the tail of its log).
  std::string wait_ready(std::chrono::milliseconds timeout);
  // Ends it and reaps it: SIGTERM, then SIGKILL if it is still there after kTermGrace (a VM has
  // nothing to flush: a clone is disposable). Idempotent.
  void kill_now();
  static constexpr std::chrono::milliseconds kTermGrace{2000};
  // The child's descriptor of its lifeline (--parent-fd).
  static constexpr int kParentFd = 4;
  // Waits up to `grace` for it to exit by itself, then kills it. Returns the wait status.
  int wait_or_kill(std::chrono::milliseconds grace);
  // SIGKILL without reaping, from any thread; harmless once the child is gone (the signal
  // goes through a pidfd, so it can never hit a recycled pid). The owner's blocking calls on
  // the VM then fail and it unwinds.
  void terminate();
  // The last `n` bytes of the log, for error messages.
  std::string log_tail(size_t n = 2000) const;
  const std::string& log_path() const { return log_; }
  // For an event loop that waits on the child instead of blocking (wisp serve): the read end
  // of the ready pipe (-1 without one) and a pidfd that becomes readable once it exits. Both
  // stay owned by this object.
  int ready_fd() const { return ready_.get(); }
  int pidfd() const { return pidfd_.get(); }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  std::string log_;
  UniqueFd ready_;
  UniqueFd pidfd_;
  UniqueFd lifeline_;  // write end of the child's --parent-fd pipe; never written
};

}  // namespace wisp::manager
