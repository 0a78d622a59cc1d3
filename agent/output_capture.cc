#include "agent/output_capture.h"

#include <kj/debug.h>

#include <algorithm>

namespace wisp::agent {
namespace {

constexpr size_t kChunk = 256 * 1024;

struct ReadState {
  kj::AsyncInputStream& in;
  CapturedOutput& out;
  size_t cap;
  bool keep_draining;
  kj::Function<void()> on_overflow;
  kj::Array<kj::byte> buffer = kj::heapArray<kj::byte>(kChunk);
};

kj::Promise<void> read_loop(ReadState& s) {
  return s.in.tryRead(s.buffer.begin(), 1, s.buffer.size())
      .then([&s](size_t n) -> kj::Promise<void> {
        if (n == 0) return kj::READY_NOW;
        size_t room = s.cap - std::min(s.cap, s.out.data.size());
        size_t keep = std::min(room, n);
        s.out.data.append(reinterpret_cast<const char*>(s.buffer.begin()), keep);
        if (keep < n && !s.out.truncated) {
          s.out.truncated = true;
          s.on_overflow();
          if (!s.keep_draining) return kj::READY_NOW;
        }
        return read_loop(s);
      });
}

}  // namespace

kj::Promise<void> read_capped(kj::AsyncInputStream& in, CapturedOutput& out, size_t cap,
                              bool keep_draining, kj::Function<void()> on_overflow) {
  auto state = kj::heap<ReadState>(ReadState{in, out, cap, keep_draining, kj::mv(on_overflow)});
  auto promise = read_loop(*state);
  return promise.attach(kj::mv(state));
}

kj::Promise<void> read_exactly(kj::AsyncInputStream& in, void* buffer, size_t size) {
  if (size == 0) return kj::READY_NOW;
  return in.tryRead(buffer, size, size).then([size](size_t n) {
    KJ_REQUIRE(n == size, "worker closed its stdout mid-frame", n, size);
  });
}

}  // namespace wisp::agent
