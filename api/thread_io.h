// KJ allows one event loop per thread: every synchronous Cap'n Proto client of a thread (agent
// and VMM control clients alike) shares it, and it goes away with the last of them.
#pragma once

#include <kj/async-io.h>

#include <memory>

namespace wisp::client {

struct ThreadIo {
  kj::AsyncIoContext io = kj::setupAsyncIo();
};

// This thread's loop, created by the first caller.
std::shared_ptr<ThreadIo> thread_io();

}  // namespace wisp::client
