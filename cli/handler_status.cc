#include "cli/handler_status.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "base/error.h"
#include "base/exit_codes.h"
#include "base/file_io.h"

namespace wisp::cli {

int handler_exit_status(const char* command, const client::InvokeResult& r,
                        std::chrono::milliseconds timeout) {
  if (r.timed_out) {
    std::fprintf(stderr, "%s: the handler ran past its %g s timeout and was killed\n", command,
                 static_cast<double>(timeout.count()) / 1000);
    return kExitTimedOut;
  }
  if (!r.limit_exceeded.empty() || r.output_truncated) {
    std::string which = r.limit_exceeded.empty() ? "output" : r.limit_exceeded;
    std::fprintf(stderr, "%s: the handler exceeded its %s limit%s (peak memory %llu KiB)\n",
                 command, which.c_str(), r.output_truncated ? "; its output was truncated" : "",
                 static_cast<unsigned long long>(r.peak_memory_bytes >> 10));
    return kExitLimitExceeded;
  }
  if (r.signaled) {
    std::fprintf(stderr, "%s: the handler was killed by signal %d (%s)\n", command, r.signal,
                 strsignal(r.signal));
    return kExitSignalBase + r.signal;
  }
  return r.exit_code;
}

std::string write_result(const client::InvokeResult& r, int out_fd, int err_fd) {
  if (!write_all(out_fd, r.out)) return errno_message("writing the result to stdout");
  if (!write_all(err_fd, r.err)) return errno_message("writing the handler's stderr");
  return "";
}

}  // namespace wisp::cli
