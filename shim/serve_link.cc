#include "shim/serve_link.h"

#include <cstdlib>

#include "base/error.h"

namespace wisp::shim {

ServeLink::ServeLink(kj::AsyncIoProvider& io, std::string socket_path)
    : io_(io), socket_path_(std::move(socket_path)) {}

kj::Promise<api::serve::Wisp::Client> ServeLink::connect() {
  KJ_IF_MAYBE (wisp, wisp_) {
    return *wisp;
  }
  if (socket_path_.empty()) {
    throw Error(
        "no wisp serve socket: set WISP_SERVER in containerd's environment to the "
        "--socket of `wisp serve`");
  }
  std::string path = socket_path_;
  return io_.getNetwork()
      .parseAddress(("unix:" + path).c_str())
      .then([](kj::Own<kj::NetworkAddress> address) { return address->connect(); })
      .then(
          [this](kj::Own<kj::AsyncIoStream> stream) {
            KJ_IF_MAYBE (wisp, wisp_) {
              return *wisp;  // another Create connected meanwhile
            }
            stream_ = kj::mv(stream);
            client_ = kj::heap<capnp::TwoPartyClient>(*stream_);
            api::serve::Wisp::Client wisp = client_->bootstrap().castAs<api::serve::Wisp>();
            wisp_ = wisp;
            return wisp;
          },
          [path](kj::Exception&& e) -> api::serve::Wisp::Client {
            throw Error("wisp serve at " + path +
                        " is not reachable: " + e.getDescription().cStr());
          });
}

std::string serve_socket_from_env() {
  const char* s = std::getenv("WISP_SERVER");
  return s ? s : "";
}

}  // namespace wisp::shim
