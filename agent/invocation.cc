#include "agent/invocation.h"

#include <kj/debug.h>
#include <sys/wait.h>

namespace wisp::agent {

kj::Promise<kj::Maybe<int>> read_handler_status(kj::AsyncInputStream& status_pipe) {
  auto buffer = kj::heap<int>(0);
  int* status = buffer.get();
  return status_pipe.tryRead(status, sizeof(int), sizeof(int))
      .then([status](size_t n) -> kj::Maybe<int> {
        if (n == sizeof(int)) return *status;
        return nullptr;
      })
      .attach(kj::mv(buffer));
}

void apply_exit(const ExitInfo& init_exit, kj::Maybe<int> handler_status,
                InvocationResult& result) {
  int wait_status = init_exit.wait_status;
  KJ_IF_MAYBE (s, handler_status) {
    wait_status = *s;
  }
  if (WIFSIGNALED(wait_status)) {
    result.signaled = true;
    result.status = WTERMSIG(wait_status);
  } else {
    result.signaled = false;
    result.status = WEXITSTATUS(wait_status);
  }
}

void apply_stats(const CgroupStats& stats, const ExitInfo* exit, InvocationResult& result) {
  result.peak_memory_bytes = stats.peak_memory_bytes;
  result.cpu_time_ns = stats.cpu_time_ns;
  if (exit != nullptr) {
    const rusage& ru = exit->usage;
    if (result.peak_memory_bytes == 0) {
      result.peak_memory_bytes = static_cast<uint64_t>(ru.ru_maxrss) * 1024;
    }
    if (result.cpu_time_ns == 0) {
      auto ns = [](const timeval& tv) {
        return static_cast<uint64_t>(tv.tv_sec) * 1000000000ull +
               static_cast<uint64_t>(tv.tv_usec) * 1000ull;
      };
      result.cpu_time_ns = ns(ru.ru_utime) + ns(ru.ru_stime);
    }
  }
  if (result.limit_exceeded.empty()) {
    if (stats.oom_killed) {
      result.limit_exceeded = "memory";
    } else if (stats.pids_limited) {
      result.limit_exceeded = "pids";
    }
  }
}

}  // namespace wisp::agent
