// The shim's three modes, one file each: `start` (start_command.cc), `delete`
// (delete_command.cc) and the serving mode `start` leaves running (serve_mode.cc). Each returns
// the process's exit status; a failure is a line on stderr, which containerd puts in its error
// (start, delete) or reads from the bundle's log FIFO (serving).
#pragma once

#include "shim/shim_options.h"

namespace wisp::shim {

// The fd on which the serving mode finds its listening ttrpc socket (as containerd's own shims
// pass it: the first of exec.Cmd's ExtraFiles).
constexpr int kListenFd = 3;

// Binds the task's socket (shim/socket_address.h), starts the serving mode on it as a process
// of its own (new session, stdio on /dev/null and the bundle's log FIFO), writes the address
// into the bundle's "address" file and prints it on stdout. When a shim already serves that
// socket, prints its address instead.
int run_start(const ShimOptions& options);

// The file in the bundle where Create records the id of the task's sandbox in `wisp serve`.
constexpr const char* kSandboxIdFile = "wisp-sandbox";

// Cleans up after a shim that is gone: kills the sandbox recorded in the bundle (through
// WISP_SERVER; one already gone is fine), removes the shim's socket, and prints a
// DeleteResponse (protobuf) on stdout, which containerd reads.
int run_delete(const ShimOptions& options);

// Serves containerd.task.v2.Task over ttrpc on kListenFd until Shutdown or SIGTERM.
int run_serve(const ShimOptions& options);

}  // namespace wisp::shim
