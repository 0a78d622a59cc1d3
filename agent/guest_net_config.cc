#include "agent/guest_net_config.h"

#include <cstdlib>
#include <sstream>

#include "base/ipv4.h"

namespace wisp::agent {
namespace {

bool parse_uint(const std::string& s, uint32_t lo, uint32_t hi, uint32_t* out) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos)
    return false;
  unsigned long v = std::strtoul(s.c_str(), nullptr, 10);
  if (v < lo || v > hi) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

}  // namespace

std::optional<GuestNetConfig> parse_guest_net(const std::string& cmdline, std::string* error) {
  static const std::string kKey = "wisp.net=";
  std::istringstream words(cmdline);
  std::string word, value;
  while (words >> word)
    if (word.rfind(kKey, 0) == 0) value = word.substr(kKey.size());  // the last one wins
  if (value.empty()) return std::nullopt;
  auto fail = [&](const std::string& why) -> std::optional<GuestNetConfig> {
    *error = "wisp.net=" + value + ": " + why;
    return std::nullopt;
  };
  size_t slash = value.find('/'), c1 = value.find(','), c2 = value.find(',', c1 + 1);
  if (slash == std::string::npos || c1 == std::string::npos || c2 == std::string::npos ||
      slash > c1 || value.find(',', c2 + 1) != std::string::npos)
    return fail("expected ADDR/PREFIX,GW,MTU");
  GuestNetConfig c;
  std::optional<uint32_t> address = parse_ipv4(value.substr(0, slash));
  if (!address) return fail("bad address");
  c.address = *address;
  std::optional<uint32_t> prefix = parse_prefix_length(value.substr(slash + 1, c1 - slash - 1));
  if (!prefix) return fail("bad prefix");
  c.prefix = *prefix;
  std::string gw = value.substr(c1 + 1, c2 - c1 - 1);
  if (gw != "-") {
    std::optional<uint32_t> gateway = parse_ipv4(gw);
    if (!gateway) return fail("bad gateway");
    c.gateway = *gateway;
  }
  if (!parse_uint(value.substr(c2 + 1), 68, 65535, &c.mtu)) return fail("bad MTU");
  return c;
}

std::optional<std::string> parse_guest_dns(const std::string& cmdline, std::string* error) {
  static const std::string kKey = "wisp.dns=";
  std::istringstream words(cmdline);
  std::string word, value;
  bool found = false;
  while (words >> word)
    if (word.rfind(kKey, 0) == 0) {
      value = word.substr(kKey.size());  // the last one wins
      found = true;
    }
  if (!found) return std::nullopt;
  if (!parse_ipv4(value)) {
    *error = "wisp.dns=" + value + ": not an IPv4 address";
    return std::nullopt;
  }
  return value;
}

std::string resolv_conf(const std::string& address) { return "nameserver " + address + "\n"; }

}  // namespace wisp::agent
