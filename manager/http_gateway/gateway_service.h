// The gateway's HttpService: each request is authenticated (bearer token), routed
// (route.h), turned into calls on the Wisp capability, and answered with the call's result or
// with the status its error maps to (error_status.h). Every failure becomes a reply with a
// short JSON {"error": "..."} body; none escapes to kj-http (which would close the connection)
// and none ends the process.
//
// One GatewayService serves every connection of a listener; it holds no per-request state, so
// requests on many connections run at once on the one event loop.
#pragma once

#include <capnp/compat/json.h>
#include <kj/compat/http.h>

#include <cstdint>
#include <string>

#include "api/wisp.capnp.h"

namespace wisp::http_gateway {

// Headers of the invoke route's raw-mode reply.
inline constexpr const char* kExitCodeHeader = "Wisp-Exit-Code";
inline constexpr const char* kSignalHeader = "Wisp-Signal";
inline constexpr const char* kTimingsHeader = "Wisp-Timings";
inline constexpr const char* kStderrHeader = "Wisp-Stderr";
inline constexpr const char* kLimitHeader = "Wisp-Limit";
inline constexpr const char* kTruncatedHeader = "Wisp-Output-Truncated";
// How much of stderr the Wisp-Stderr header carries (base64 of at most this many bytes).
inline constexpr size_t kStderrHeaderBytes = 8 * 1024;

// True when `authorization` is exactly "Bearer TOKEN", compared in time independent of where
// the two differ. An empty token is never matched (the caller decides whether one is needed).
bool bearer_token_matches(kj::Maybe<kj::StringPtr> authorization, const std::string& token);

class GatewayService final : public kj::HttpService, public kj::HttpServerErrorHandler {
 public:
  struct Limits {
    uint64_t max_payload_bytes =
        api::serve::Wisp::MAX_PAYLOAD_BYTES;  // raw bodies, payloads, stdin
    uint64_t max_json_bytes =
        api::serve::Wisp::MAX_MESSAGE_BYTES;  // JSON bodies (base64 grows 4/3)
  };

  // `table` must have been built with register_headers() and outlive the service.
  GatewayService(const kj::HttpHeaderTable& table, api::serve::Wisp::Client wisp, std::string token,
                 Limits limits);

  // Adds the request headers the service reads (Authorization) to a table being built.
  static void register_headers(kj::HttpHeaderTable::Builder& builder);

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                            Response& response) override;

  // kj-http's own failures (a request it cannot parse, a bad Content-Length) answered like the
  // service's: a status and a JSON {"error"} body. Pass the service as the HttpServer's
  // errorHandler.
  kj::Promise<void> handleClientProtocolError(kj::HttpHeaders::ProtocolError error,
                                              Response& response) override;
  kj::Promise<void> handleApplicationError(kj::Exception exception,
                                           kj::Maybe<Response&> response) override;
  kj::Promise<void> handleNoResponse(Response& response) override;

 private:
  struct Reply;
  kj::Promise<Reply> dispatch(kj::HttpMethod method, kj::StringPtr url,
                              const kj::HttpHeaders& headers, kj::AsyncInputStream& body);
  kj::Promise<Reply> invoke(std::string name, bool json, kj::AsyncInputStream& body);
  kj::Promise<Reply> list_templates();
  kj::Promise<Reply> create_sandbox(kj::AsyncInputStream& body);
  kj::Promise<Reply> exec_sandbox(std::string id, kj::AsyncInputStream& body);
  kj::Promise<Reply> snapshot_sandbox(std::string id, kj::AsyncInputStream& body);
  kj::Promise<Reply> delete_sandbox(std::string id);
  kj::Promise<Reply> healthz();
  kj::Promise<Reply> metrics();
  Reply invoke_reply(api::serve::InvokeResponse::Reader r, bool json);
  Reply json_reply(unsigned status, kj::String json);
  Reply error(unsigned status, const std::string& message);
  kj::Promise<void> send(Response& response, Reply reply);

  const kj::HttpHeaderTable& table_;
  api::serve::Wisp::Client wisp_;
  std::string token_;
  Limits limits_;
  kj::Own<capnp::JsonCodec> codec_;
  kj::HttpHeaderId authorization_;
};

}  // namespace wisp::http_gateway
