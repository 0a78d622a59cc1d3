// The shim's connection to `wisp serve` (api/wisp.capnp over serve's Unix socket): made at the
// first Create, on the shim's event loop, and kept for the shim's life. The socket comes from
// WISP_SERVER, the variable the wisp CLI reads too; containerd passes its environment to shims.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <string>

#include "api/wisp.capnp.h"

namespace wisp::shim {

class ServeLink {
 public:
  // `socket_path` "" means not configured: connect() then fails with a message saying so.
  ServeLink(kj::AsyncIoProvider& io, std::string socket_path);

  // The Wisp bootstrap capability, connecting on the first call.
  kj::Promise<api::serve::Wisp::Client> connect();

 private:
  kj::AsyncIoProvider& io_;
  std::string socket_path_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyClient> client_;
  kj::Maybe<api::serve::Wisp::Client> wisp_;
};

// $WISP_SERVER, or "".
std::string serve_socket_from_env();

}  // namespace wisp::shim
