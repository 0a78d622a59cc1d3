// How `wisp exec` and `wisp invoke` end: with the handler's own exit status, or one of wisp's
// (base/exit_codes.h) explained on stderr.
#pragma once

#include <chrono>

#include "api/agent_client.h"

namespace wisp::cli {

// The exit status for a handler's result: its exit code; kExitTimedOut, kExitLimitExceeded or
// kExitSignalBase + N, each with a line on stderr starting with `command` ("wisp exec").
int handler_exit_status(const char* command, const client::InvokeResult& r,
                        std::chrono::milliseconds timeout);

}  // namespace wisp::cli
