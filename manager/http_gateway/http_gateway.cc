#include "manager/http_gateway/http_gateway.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "manager/http_gateway/gateway_service.h"

namespace wisp::http_gateway {
namespace {

// kj-http's defaults, except that a slow client may not hold a connection's request open
// longer than this (headers) and idle keep-alive connections are closed sooner.
kj::HttpServerSettings server_settings(kj::HttpServerErrorHandler& errors) {
  kj::HttpServerSettings s;
  s.errorHandler = errors;
  s.headerTimeout = 15 * kj::SECONDS;
  s.pipelineTimeout = 30 * kj::SECONDS;
  return s;
}

// "HOST:PORT" with a numeric port, or "unix:PATH".
void check_address_syntax(const std::string& address) {
  if (address.rfind("unix:", 0) == 0) {
    if (address.size() == 5) throw Error("--http unix:PATH: the path is empty");
    return;
  }
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    throw Error("--http " + address + ": expected HOST:PORT or unix:PATH");
  std::string port = address.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535)
    throw Error("--http " + address + ": the port is not a number in 0..65535");
}

}  // namespace

bool is_local_address(const sockaddr* addr) {
  switch (addr->sa_family) {
    case AF_UNIX:
      return true;
    case AF_INET: {
      auto* in = reinterpret_cast<const sockaddr_in*>(addr);
      return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    case AF_INET6: {
      auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
      if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
      return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    default:
      return false;
  }
}

Gateway::Gateway(kj::Timer& timer, api::serve::Wisp::Client wisp, GatewayOptions options,
                 uint64_t max_payload_bytes, uint64_t max_json_bytes) {
  GatewayService::Limits limits;
  if (max_payload_bytes != 0) limits.max_payload_bytes = max_payload_bytes;
  if (max_json_bytes != 0) limits.max_json_bytes = max_json_bytes;
  kj::HttpHeaderTable::Builder builder;
  GatewayService::register_headers(builder);
  table_ = builder.build();
  auto service = kj::heap<GatewayService>(*table_, kj::mv(wisp), std::move(options.token), limits);
  kj::HttpServerErrorHandler& errors = *service;
  service_ = kj::mv(service);
  server_ = kj::heap<kj::HttpServer>(timer, *table_, *service_, server_settings(errors));
}

Gateway::~Gateway() = default;

kj::Promise<void> Gateway::listen(kj::ConnectionReceiver& receiver) {
  return server_->listenHttp(receiver);
}

kj::Promise<void> Gateway::serve_connection(kj::Own<kj::AsyncIoStream> connection) {
  return server_->listenHttp(kj::mv(connection));
}

kj::Promise<void> serve_http(kj::AsyncIoContext& io, const std::string& address,
                             wisp::api::serve::Wisp::Client wisp, GatewayOptions options) {
  check_address_syntax(address);
  bool is_unix = address.rfind("unix:", 0) == 0;
  // Parsed here, synchronously (kj's parseAddress would need a wait(), which a caller inside
  // the event loop cannot do), so a bad address is an error at once.
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (is_unix) {
    std::string path = address.substr(5);
    sockaddr_un un{};
    if (path.size() >= sizeof un.sun_path)
      throw Error("--http " + address + ": the path is longer than " +
                  std::to_string(sizeof un.sun_path - 1) + " bytes");
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, path.c_str(), path.size() + 1);
    memcpy(&storage, &un, sizeof un);
    length = sizeof un;
  } else {
    size_t colon = address.rfind(':');
    std::string host = address.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    std::string port = address.substr(colon + 1);
    // Numeric addresses only (and "localhost"): no name service, which a static binary
    // cannot load, and no lookup that could answer with another machine.
    if (host == "localhost") host = "127.0.0.1";
    char* end = nullptr;
    unsigned long p = std::strtoul(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || p > 65535)
      throw Error("--http " + address + ": the port must be a number from 0 to 65535");
    sockaddr_in v4{};
    sockaddr_in6 v6{};
    if (inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
      v4.sin_family = AF_INET;
      v4.sin_port = htons(static_cast<uint16_t>(p));
      memcpy(&storage, &v4, sizeof v4);
      length = sizeof v4;
    } else if (inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
      v6.sin6_family = AF_INET6;
      v6.sin6_port = htons(static_cast<uint16_t>(p));
      memcpy(&storage, &v6, sizeof v6);
      length = sizeof v6;
    } else {
      throw Error("--http " + address + ": the host must be a numeric IPv4 or IPv6 address " +
                  "(or localhost)");
    }
  }
  const sockaddr* sa = reinterpret_cast<const sockaddr*>(&storage);
  if (options.token.empty() && !is_local_address(sa))
    throw Error("--http " + address +
                " is reachable from other machines: give a bearer token (--http-token-file) "
                "or listen on loopback or unix:PATH");
  if (is_unix) {
    std::string path = address.substr(5);
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
  }
  auto addr = io.provider->getNetwork().getSockaddr(sa, length);
  kj::Own<kj::ConnectionReceiver> receiver;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { receiver = addr->listen(); })) {
    throw Error("--http " + address + ": cannot listen: " + e->getDescription().cStr());
  }
  if (is_unix && chmod(address.substr(5).c_str(), 0600) != 0)
    throw_errno("--http " + address + ": chmod 0600");
  auto gateway = kj::heap<Gateway>(io.provider->getTimer(), kj::mv(wisp), std::move(options));
  auto listening = gateway->listen(*receiver);
  // The listener goes before the gateway, the gateway's server before its service and table.
  return listening.attach(kj::mv(gateway), kj::mv(receiver));
}

}  // namespace wisp::http_gateway
