// The HTTP/JSON gateway of `wisp serve` (issue 12): HTTP routes mapped onto a Wisp capability
// (api/wisp.capnp), for controllers in any language. It only ever calls the capability; how
// serve runs VMs is none of its business. Routes, statuses and bodies: docs-http.md and
// gateway_service.h.
#pragma once

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "api/wisp.capnp.h"

namespace wisp::http_gateway {

struct GatewayOptions {
  std::string token;  // "": no bearer token required
};

// Listens on `address` ("HOST:PORT" or "unix:PATH") and serves until the promise is
// cancelled. Throws Error (bad address; a non-loopback address without a token).
// A Unix socket is made mode 0600 (a stale socket file at PATH is replaced).
kj::Promise<void> serve_http(kj::AsyncIoContext& io, const std::string& address,
                             wisp::api::serve::Wisp::Client wisp, GatewayOptions options);

// Whether a listener on `addr` is reachable only from this machine (a Unix socket, 127/8,
// ::1, ::ffff:127.x).
bool is_local_address(const sockaddr* addr);

// The gateway on connections the caller accepts itself (tests, the fuzzer): the header table,
// the service and kj's HttpServer, owned together.
class Gateway {
 public:
  // `max_payload_bytes` / `max_json_bytes` 0: the API's limits (Wisp.maxPayloadBytes,
  // maxMessageBytes); tests pass small ones.
  Gateway(kj::Timer& timer, api::serve::Wisp::Client wisp, GatewayOptions options,
          uint64_t max_payload_bytes = 0, uint64_t max_json_bytes = 0);
  ~Gateway();
  kj::Promise<void> listen(kj::ConnectionReceiver& receiver);
  kj::Promise<void> serve_connection(kj::Own<kj::AsyncIoStream> connection);

 private:
  kj::Own<kj::HttpHeaderTable> table_;
  kj::Own<kj::HttpService> service_;
  kj::Own<kj::HttpServer> server_;
};

}  // namespace wisp::http_gateway
