// Fuzzes what containerd (or anything that reaches the shim's socket) sends the shim: the
// ttrpc frame stream, split into reads as the input's first byte says, decoded frame by frame
// (headers claiming any length, oversized bodies skipped), each frame's Request envelope parsed
// and dispatched by the Router to the Task service. Every frame must be answered with a Response
// that parses, or not at all (types other than request), and nothing may crash or grow without
// bound.
#include <kj/async-io.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "shim/task_service.h"
#include "shim/ttrpc_client.h"
#include "shim/ttrpc_frame.h"
#include "shim/ttrpc_server.h"

namespace {

using namespace wisp::shim;

struct Harness {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::WaitScope& wait_scope = io.waitScope;
  // No serve behind it: a Create that gets that far fails to connect (so no task exists, and
  // no FIFO is opened; events are dropped).
  TaskService tasks{ShimIdentity{"fuzz", "default", "/nonexistent-bundle", "t"},
                    []() -> kj::Promise<wisp::api::serve::Wisp::Client> {
                      throw wisp::Error("no serve in the fuzzer");
                    },
                    *io.lowLevelProvider,
                    [](const std::string&, const google::protobuf::Message&) {}, [] {}};
  ttrpc::Router router;
  Harness() {
    tasks.register_methods(router);
    router.add("fuzz.Echo", "Echo", [](std::string payload) -> kj::Promise<ttrpc::Result> {
      return ttrpc::Result::ok(std::move(payload));
    });
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness* h = new Harness();
  if (size == 0) return 0;
  size_t chunk = 1 + data[0] % 64;  // how the socket splits the stream
  ++data;
  --size;
  ttrpc::FrameDecoder decoder;
  for (size_t off = 0; off < size; off += chunk) {
    size_t n = std::min(chunk, size - off);
    decoder.feed(data + off, n);
    if (decoder.pending_bytes() > ttrpc::kHeaderBytes + ttrpc::kMaxMessageBytes + 64) abort();
    while (auto frame = decoder.next()) {
      uint32_t stream_id = frame->header.stream_id;
      auto out = h->router.respond(std::move(*frame)).wait(h->wait_scope);
      if (!out) continue;
      if (out->size() < ttrpc::kHeaderBytes) abort();
      auto header = ttrpc::decode_header(reinterpret_cast<const uint8_t*>(out->data()));
      if (header.stream_id != stream_id || header.length != out->size() - ttrpc::kHeaderBytes ||
          header.type != static_cast<uint8_t>(ttrpc::MessageType::kResponse)) {
        abort();
      }
      ttrpc::Result result;
      if (!ttrpc::decode_response(out->substr(ttrpc::kHeaderBytes), &result)) abort();
    }
  }
  return 0;
}
