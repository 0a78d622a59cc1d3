#include "manager/host_net/egress_rule.h"

#include <arpa/inet.h>

#include <optional>

#include "base/error.h"
#include "base/ipv4.h"
#include "base/options.h"

namespace wisp::host_net {
namespace {

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw UsageError("--allow " + text + ": " + why +
                   " (expected CIDR[:PORT], e.g. 10.1.2.3/32:8080)");
}

}  // namespace

EgressRule parse_egress_rule(const std::string& text) {
  std::string rest = text;
  EgressRule rule;
  size_t colon = rest.find(':');
  if (colon != std::string::npos) {
    std::string port = rest.substr(colon + 1);
    bool digits = !port.empty() && port.size() <= 5 &&
                  port.find_first_not_of("0123456789") == std::string::npos;
    unsigned long value = digits ? std::stoul(port) : 0;
    if (value < 1 || value > 65535) bad(text, "the port '" + port + "' is not 1 to 65535");
    rule.port = static_cast<uint16_t>(value);
    rest = rest.substr(0, colon);
  }
  uint32_t prefix = 32;
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    // /0 is every address: parse_prefix_length (an interface's prefix) starts at 1.
    std::string length = rest.substr(slash + 1);
    std::optional<uint32_t> p = length == "0" ? 0u : parse_prefix_length(length);
    if (!p) bad(text, "the prefix length '" + length + "' is not 0 to 32");
    prefix = *p;
    rest = rest.substr(0, slash);
  }
  std::optional<uint32_t> address = parse_ipv4(rest);
  if (!address) bad(text, "the address '" + rest + "' is not a dotted quad");
  uint32_t mask = prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix);
  in_addr a{htonl(ntohl(*address) & mask)};
  char buf[INET_ADDRSTRLEN];
  rule.network =
      std::string(::inet_ntop(AF_INET, &a, buf, sizeof(buf))) + "/" + std::to_string(prefix);
  return rule;
}

std::string to_string(const EgressRule& rule) {
  return rule.network + (rule.port ? ":" + std::to_string(rule.port) : "");
}

}  // namespace wisp::host_net
