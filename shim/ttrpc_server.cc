#include "shim/ttrpc_server.h"

#include <kj/async.h>
#include <kj/debug.h>

#include "base/log.h"
#include "shim/ttrpc_envelope.pb.h"

namespace wisp::shim::ttrpc {

namespace {

// One connection: its read loop, the calls in flight and the chain of response writes.
class Connection final : private kj::TaskSet::ErrorHandler {
 public:
  Connection(const Router& router, kj::Own<kj::AsyncIoStream> stream)
      : router_(router), stream_(kj::mv(stream)) {}

  kj::Promise<void> run() {
    // Ends when the peer has closed and the calls it made are answered, or as soon as a write
    // fails (the peer is gone: no reason to keep running its calls).
    auto answered = read_loop().then([this] { return calls_.onEmpty(); }).then([this] {
      auto flushed = kj::mv(writes_);
      writes_ = kj::READY_NOW;
      return flushed;
    });
    return answered.exclusiveJoin(kj::mv(failed_.promise));
  }

 private:
  kj::Promise<void> read_loop() {
    return stream_->tryRead(buffer_, 1, sizeof(buffer_))
        .then([this](size_t n) -> kj::Promise<void> {
          if (n == 0) {
            if (decoder_.pending_bytes() > 0) {
              LOG_DEBUG("ttrpc: peer closed in the middle of a frame (%zu bytes)",
                        decoder_.pending_bytes());
            }
            return kj::READY_NOW;
          }
          decoder_.feed(buffer_, n);
          while (auto frame = decoder_.next()) {
            calls_.add(router_.respond(kj::mv(*frame)).then([this](std::optional<std::string> out) {
              if (out) send(kj::heap<std::string>(kj::mv(*out)));
            }));
          }
          return read_loop();
        });
  }

  void send(kj::Own<std::string> bytes) {
    writes_ = writes_
                  .then([this, bytes = kj::mv(bytes)]() mutable {
                    auto write = stream_->write(bytes->data(), bytes->size());
                    return write.attach(kj::mv(bytes));
                  })
                  .eagerlyEvaluate([this](kj::Exception&& e) {
                    LOG_DEBUG("ttrpc: write failed: %s", e.getDescription().cStr());
                    if (failed_.fulfiller->isWaiting()) failed_.fulfiller->fulfill();
                  });
  }

  void taskFailed(kj::Exception&& e) override {
    // respond() turns every error into a status; this is a bug, logged, not a crash.
    LOG_ERROR("ttrpc: call failed outside its handler: %s", e.getDescription().cStr());
  }

  const Router& router_;
  kj::Own<kj::AsyncIoStream> stream_;
  FrameDecoder decoder_;
  unsigned char buffer_[64 * 1024];
  kj::PromiseFulfillerPair<void> failed_ = kj::newPromiseAndFulfiller<void>();
  kj::Promise<void> writes_ = kj::READY_NOW;
  kj::TaskSet calls_{*this};
};

class LogAcceptErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    LOG_WARN("ttrpc: connection: %s", e.getDescription().cStr());
  }
};

kj::Promise<void> accept_loop(const Router& router, kj::ConnectionReceiver& listener,
                              kj::TaskSet& connections) {
  return listener.accept().then([&](kj::Own<kj::AsyncIoStream> stream) {
    connections.add(serve_connection(router, kj::mv(stream)));
    return accept_loop(router, listener, connections);
  });
}

}  // namespace

void Router::add(const std::string& service, const std::string& method, Handler handler) {
  handlers_[{service, method}] = std::move(handler);
}

kj::Promise<Result> Router::dispatch(const std::string& service, const std::string& method,
                                     std::string payload) const {
  auto it = handlers_.find({service, method});
  if (it == handlers_.end()) {
    bool service_known = false;
    for (const auto& [key, handler] : handlers_) service_known |= key.first == service;
    // ttrpc's own wording, which containerd logs as it is.
    return Result::error(Code::kUnimplemented,
                         service_known ? "method " + method : "service " + service);
  }
  try {
    return it->second(std::move(payload));
  } catch (const std::exception& e) {
    return Result::error(Code::kInternal, e.what());
  }
}

kj::Promise<std::optional<std::string>> Router::respond(Frame frame) const {
  uint32_t id = frame.header.stream_id;
  if (frame.oversized) {
    return std::optional<std::string>(encode_response(
        id,
        Result::error(Code::kResourceExhausted,
                      "message length " + std::to_string(frame.header.length) +
                          " exceed maximum message size of " + std::to_string(kMaxMessageBytes))));
  }
  if (frame.header.type != static_cast<uint8_t>(MessageType::kRequest)) {
    return std::optional<std::string>();
  }
  wire::Request request;
  if (!request.ParseFromString(frame.payload)) {
    return std::optional<std::string>(
        encode_response(id, Result::error(Code::kInvalidArgument,
                                          "unmarshal request error: not a ttrpc Request message")));
  }
  if (id % 2 != 1) {
    return std::optional<std::string>(
        encode_response(id, Result::error(Code::kInvalidArgument,
                                          "StreamID must be odd for client initiated streams")));
  }
  return dispatch(request.service(), request.method(), std::move(*request.mutable_payload()))
      .catch_([](kj::Exception&& e) {
        return Result::error(Code::kInternal, e.getDescription().cStr());
      })
      .then(
          [id](Result result) { return std::optional<std::string>(encode_response(id, result)); });
}

std::string encode_response(uint32_t stream_id, const Result& result) {
  wire::Response response;
  if (result.code == Code::kOk) {
    response.set_payload(result.payload);
  } else {
    response.mutable_status()->set_code(static_cast<int32_t>(result.code));
    response.mutable_status()->set_message(result.message);
  }
  std::string bytes;
  response.SerializeToString(&bytes);
  if (bytes.size() > kMaxMessageBytes) {
    // A handler's answer over ttrpc's limit would be refused by the client: say so instead.
    response.Clear();
    response.mutable_status()->set_code(static_cast<int32_t>(Code::kResourceExhausted));
    response.mutable_status()->set_message("response of " + std::to_string(bytes.size()) +
                                           " bytes is over ttrpc's message limit");
    bytes.clear();
    response.SerializeToString(&bytes);
  }
  return encode_frame(stream_id, MessageType::kResponse, bytes);
}

kj::Promise<void> serve_connection(const Router& router, kj::Own<kj::AsyncIoStream> stream) {
  auto connection = kj::heap<Connection>(router, kj::mv(stream));
  auto done = connection->run();
  return done.attach(kj::mv(connection));
}

kj::Promise<void> serve_listener(const Router& router, kj::ConnectionReceiver& listener) {
  auto errors = kj::heap<LogAcceptErrors>();
  auto connections = kj::heap<kj::TaskSet>(*errors);
  auto loop = accept_loop(router, listener, *connections);
  // The connections are destroyed before the error handler they report to.
  return loop.attach(kj::mv(connections)).attach(kj::mv(errors));
}

}  // namespace wisp::shim::ttrpc
