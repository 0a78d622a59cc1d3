// Reading a handler's stdout/stderr pipe into memory with a size cap.
#pragma once

#include <kj/async-io.h>
#include <kj/function.h>

#include <cstddef>
#include <string>

namespace wisp::agent {

inline constexpr size_t kStderrCapBytes = 1 << 20;  // 1 MiB per invocation

struct CapturedOutput {
  std::string data;
  bool truncated = false;  // more than the cap was written
};

// Reads `in` until EOF into `out`, keeping at most `cap` bytes. The first time more arrives,
// sets out.truncated and calls `on_overflow` once; with `keep_draining` the rest is read and
// discarded (so the writer never blocks on a full pipe), otherwise reading stops there.
kj::Promise<void> read_capped(kj::AsyncInputStream& in, CapturedOutput& out, size_t cap,
                              bool keep_draining, kj::Function<void()> on_overflow);

// Reads exactly `size` bytes; fails with a kj::Exception on early EOF.
kj::Promise<void> read_exactly(kj::AsyncInputStream& in, void* buffer, size_t size);

}  // namespace wisp::agent
