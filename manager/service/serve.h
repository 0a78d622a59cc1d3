// `wisp serve`'s main loop: one KJ event loop serving api/wisp.capnp on a Unix socket (0600,
// peers checked), the engine (service.h), and the lifecycle: SIGTERM or SIGINT drains (new
// work is refused "draining: ...", calls in flight finish up to --drain-timeout, then the rest
// are cancelled and their VMs killed) and serve exits 0.
#pragma once

#include <kj/async-io.h>

#include <functional>

#include "api/wisp.capnp.h"
#include "manager/service/service.h"

namespace wisp::service {

// Starts extra listeners on serve's loop (the HTTP gateway): given the loop and a Wisp
// capability, returns a promise that runs until cancelled (serve cancels it when it drains).
using ExtraListener =
    std::function<kj::Promise<void>(kj::AsyncIoContext& io, api::serve::Wisp::Client wisp)>;

// Runs until drained. Throws wisp::Error when it cannot start (socket in use, bad store).
// `ready` (may be empty) is called once serve listens (the CLI prints "listening").
void run_serve(const ServeOptions& options, ExtraListener extra,
               const std::function<void()>& ready);

// Binds a Unix stream socket at `path` with mode 0600, replacing a stale socket file there only
// if nothing listens on it. Throws Error naming the path.
int listen_unix_socket(const std::string& path);

}  // namespace wisp::service
