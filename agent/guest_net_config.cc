#include "agent/guest_net_config.h"

#include <arpa/inet.h>

#include <cstdlib>
#include <sstream>

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

bool parse_ipv4(const std::string& s, uint32_t* out) {
  in_addr a;
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  *out = a.s_addr;
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
  if (!parse_ipv4(value.substr(0, slash), &c.address)) return fail("bad address");
  if (!parse_uint(value.substr(slash + 1, c1 - slash - 1), 1, 32, &c.prefix))
    return fail("bad prefix");
  std::string gw = value.substr(c1 + 1, c2 - c1 - 1);
  if (gw != "-" && !parse_ipv4(gw, &c.gateway)) return fail("bad gateway");
  if (!parse_uint(value.substr(c2 + 1), 68, 65535, &c.mtu)) return fail("bad MTU");
  return c;
}

}  // namespace wisp::agent
