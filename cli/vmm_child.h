// A VMM child process (`wisp run` or `wisp snapshot restore`) started by a manager command
// (`wisp template create`, `wisp invoke`): spawned with its console and stderr in files,
// optionally reporting "ready" on a pipe once restored, and killed and reaped on destruction,
// so no path out of a command leaves a VM behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace wisp {

class VmmChild {
 public:
  // Runs this executable with `args` (e.g. {"snapshot", "restore", DIR, ...}); stdin and
  // stdout are /dev/null, stderr goes to `log`. With `ready_pipe`, the child gets
  // "--ready-fd N" appended and wait_ready() can be used. Throws Error.
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
  // SIGKILL and reap (a VM has nothing to flush: a clone is disposable). Idempotent.
  void kill_now();
  // Waits up to `grace` for it to exit by itself, then kills it. Returns the wait status.
  int wait_or_kill(std::chrono::milliseconds grace);
  // The last `n` bytes of the log, for error messages.
  std::string log_tail(size_t n = 2000) const;

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  std::string log_;
  UniqueFd ready_;
};

}  // namespace wisp
