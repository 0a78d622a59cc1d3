#include "manager/http_gateway/error_status.h"

#include <string_view>

namespace wisp::http_gateway {

unsigned status_for_word(const std::string& word) {
  if (word == "not-found") return 404;
  if (word == "bad-request") return 400;
  if (word == "overloaded") return 429;
  if (word == "draining") return 503;
  if (word == "vm-failed") return 502;
  if (word == "too-large") return 413;
  if (word == "unauthorized") return 401;
  return 500;
}

ErrorReply error_reply(const kj::Exception& e) {
  std::string_view d(e.getDescription().cStr(), e.getDescription().size());
  // An exception that crossed Cap'n Proto RPC carries this prefix (capnp/rpc.c++).
  constexpr std::string_view kRemote = "remote exception: ";
  if (d.substr(0, kRemote.size()) == kRemote) d.remove_prefix(kRemote.size());
  std::string message(d);
  size_t colon = d.find(": ");
  if (colon != std::string_view::npos && colon <= 16) {
    unsigned status = status_for_word(std::string(d.substr(0, colon)));
    if (status != 500) return {status, message};
  }
  switch (e.getType()) {
    case kj::Exception::Type::DISCONNECTED:
      return {502, "vm-failed: the service went away mid-call: " + message};
    case kj::Exception::Type::OVERLOADED:
      return {429, "overloaded: " + message};
    default:
      return {500, "internal: " + message};
  }
}

void fail(const char* word, const std::string& message) {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                        kj::str(word, ": ", message.c_str())));
}

const char* status_text(unsigned status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

}  // namespace wisp::http_gateway
