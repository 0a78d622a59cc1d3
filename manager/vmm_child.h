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
#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "manager/host_net/vm_network.h"

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
  // depend on which thread spawned the child). With `order_fd` >= 0 (a standby's end of its
  // order socketpair, api/standby_order.h), the child gets it as "--order-fd 5"; the caller
  // closes its copy. With `network` (the VM's own, make_vm_network()), the child gets its
  // namespace as "--netns-fd 6" and this object owns it until the child is reaped: the VM's
  // network goes with the VM. With `memory_fd` >= 0 (a restore's base memory file, a copy of
  // it: manager/huge_page_layer.h), the child gets it as "--memory-fd 7"; the caller keeps
  // its copy. Throws Error naming the executable.
  VmmChild(const std::vector<std::string>& args, const std::string& log, bool ready_pipe,
           int order_fd = -1, std::unique_ptr<host_net::VmNetwork> network = nullptr,
           int memory_fd = -1);
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
  // A standby's order socket (--order-fd).
  static constexpr int kOrderFd = 5;
  // The VM's own network namespace (--netns-fd).
  static constexpr int kNetnsFd = 6;
  // A restore's base memory file (--memory-fd).
  static constexpr int kMemoryFd = 7;
  // Asks it to stop (SIGTERM, which its jail's supervisor passes on) without waiting: a pool
  // stops all its VMMs at once, then reaps each.
  void request_stop();
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
  // First, so destroyed last: after the destructor has killed and reaped the child.
  std::unique_ptr<host_net::VmNetwork> network_;
  pid_t pid_ = -1;
  int status_ = 0;
  std::string log_;
  UniqueFd ready_;
  UniqueFd pidfd_;
  UniqueFd lifeline_;  // write end of the child's --parent-fd pipe; never written
};

}  // namespace wisp::manager
