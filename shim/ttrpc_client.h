// A ttrpc client on KJ's async I/O, one call at a time: what the shim's tests use to call the
// Task service the way containerd does, and what the shim will use to forward events to
// containerd's TTRPC_ADDRESS.
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <string>

#include "shim/ttrpc_frame.h"
#include "shim/ttrpc_server.h"

namespace wisp::shim::ttrpc {

class Client {
 public:
  explicit Client(kj::AsyncIoStream& stream) : stream_(stream) {}

  // Sends Request{service, method, payload} on the next odd stream id and waits for its
  // Response: Result::ok(payload) or the status the server answered. Throws kj::Exception
  // when the connection ends first. Not reentrant: one call in flight.
  kj::Promise<Result> call(const std::string& service, const std::string& method,
                           const std::string& payload);

 private:
  kj::Promise<Result> read_response(uint32_t stream_id);

  kj::AsyncIoStream& stream_;
  FrameDecoder decoder_;
  uint32_t next_stream_id_ = 1;
  unsigned char buffer_[16 * 1024];
};

// Decodes a Response frame's payload into a Result. False when it does not parse.
bool decode_response(const std::string& bytes, Result* out);

}  // namespace wisp::shim::ttrpc
