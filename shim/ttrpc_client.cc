#include "shim/ttrpc_client.h"

#include <kj/debug.h>

#include "shim/ttrpc_envelope.pb.h"

namespace wisp::shim::ttrpc {

bool decode_response(const std::string& bytes, Result* out) {
  wire::Response response;
  if (!response.ParseFromString(bytes)) return false;
  if (response.has_status() && response.status().code() != 0) {
    *out = Result::error(static_cast<Code>(response.status().code()), response.status().message());
  } else {
    *out = Result::ok(response.payload());
  }
  return true;
}

kj::Promise<Result> Client::call(const std::string& service, const std::string& method,
                                 const std::string& payload) {
  wire::Request request;
  request.set_service(service);
  request.set_method(method);
  request.set_payload(payload);
  std::string bytes;
  request.SerializeToString(&bytes);
  uint32_t id = next_stream_id_;
  next_stream_id_ += 2;
  auto frame = kj::heap<std::string>(encode_frame(id, MessageType::kRequest, bytes));
  auto write = stream_.write(frame->data(), frame->size()).attach(kj::mv(frame));
  return write.then([this, id] { return read_response(id); });
}

kj::Promise<Result> Client::read_response(uint32_t stream_id) {
  while (auto frame = decoder_.next()) {
    if (frame->header.type != static_cast<uint8_t>(MessageType::kResponse) ||
        frame->header.stream_id != stream_id) {
      continue;  // not ours: an answer to a call given up on, or a type we do not know
    }
    if (frame->oversized) {
      return Result::error(Code::kResourceExhausted, "ttrpc: the response is over the limit");
    }
    Result result;
    if (!decode_response(frame->payload, &result)) {
      return Result::error(Code::kInternal, "ttrpc: the response does not parse");
    }
    return result;
  }
  return stream_.tryRead(buffer_, 1, sizeof(buffer_)).then([this, stream_id](size_t n) {
    KJ_REQUIRE(n > 0, "ttrpc: the connection closed before the response");
    decoder_.feed(buffer_, n);
    return read_response(stream_id);
  });
}

}  // namespace wisp::shim::ttrpc
