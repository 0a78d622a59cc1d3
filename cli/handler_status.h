// How `wisp exec` and `wisp invoke` end: with the handler's own exit status, or one of wisp's
// (base/exit_codes.h) explained on stderr.
#pragma once

#include <chrono>
#include <string>

#include "api/agent_client.h"

namespace wisp::cli {

// The exit status for a handler's result: its exit code; kExitTimedOut, kExitLimitExceeded or
// kExitSignalBase + N, each with a line on stderr starting with `command` ("wisp exec").
int handler_exit_status(const char* command, const client::InvokeResult& r,
                        std::chrono::milliseconds timeout);

// Writes a result in full: its stdout to `out_fd`, its stderr to `err_fd` (short writes, EINTR
// and a full non-blocking descriptor are waited out). Returns "" or what failed, e.g.
// "writing the result to stdout: Broken pipe", for the command to report.
std::string write_result(const client::InvokeResult& r, int out_fd = 1, int err_fd = 2);

}  // namespace wisp::cli
