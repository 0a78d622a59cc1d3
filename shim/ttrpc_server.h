// A ttrpc server on KJ's async I/O: reads frames (shim/ttrpc_frame.h) from each connection,
// decodes the Request envelope, dispatches by service and method to a handler, and writes the
// Response on the request's stream id. Calls on one connection run concurrently (containerd
// keeps a Wait open while it sends Kill); responses are written one after another.
//
// Whatever the peer sends, the answer is a status containerd understands, never a crash: an
// unknown service or method gets Unimplemented, a Request that does not parse or an even stream
// id InvalidArgument, a frame over kMaxMessageBytes ResourceExhausted (its body skipped), a
// handler that throws Internal with its message. Frames of an unknown type are ignored, as
// ttrpc does for forward compatibility.
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "shim/ttrpc_frame.h"

namespace wisp::shim::ttrpc {

// google.rpc.Code: the codes containerd's errdefs maps back to its errors.
enum class Code : int32_t {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// What a handler answers: a payload (the method's response message, encoded) or a status.
struct Result {
  Code code = Code::kOk;
  std::string message;  // for a status other than kOk
  std::string payload;  // for kOk

  static Result ok(std::string payload) { return Result{Code::kOk, "", std::move(payload)}; }
  static Result error(Code code, std::string message) {
    return Result{code, std::move(message), ""};
  }
};

using Handler = std::function<kj::Promise<Result>(std::string payload)>;

class Router {
 public:
  // Registers `service`/`method` ("containerd.task.v2.Task", "State"); a second registration
  // of the same pair replaces the first.
  void add(const std::string& service, const std::string& method, Handler handler);

  // The answer to one frame: the encoded Response frame, or nothing for a frame that gets none
  // (a type other than request). Never fails: every error becomes a status.
  kj::Promise<std::optional<std::string>> respond(Frame frame) const;

 private:
  kj::Promise<Result> dispatch(const std::string& service, const std::string& method,
                               std::string payload) const;

  std::map<std::pair<std::string, std::string>, Handler> handlers_;
};

// The Response frame for `stream_id` carrying `result`.
std::string encode_response(uint32_t stream_id, const Result& result);

// Serves one connection until the peer closes it (or a read or write fails). `router` must
// outlive the returned promise.
kj::Promise<void> serve_connection(const Router& router, kj::Own<kj::AsyncIoStream> stream);

// Accepts connections on `listener` and serves each, for as long as the promise is kept.
kj::Promise<void> serve_listener(const Router& router, kj::ConnectionReceiver& listener);

}  // namespace wisp::shim::ttrpc
