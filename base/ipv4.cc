#include "base/ipv4.h"

#include <arpa/inet.h>

namespace wisp {

std::optional<uint32_t> parse_ipv4(const std::string& text) {
  in_addr a;
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
  return a.s_addr;
}

std::optional<uint32_t> parse_prefix_length(const std::string& text) {
  if (text.empty() || text.size() > 2 || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  uint32_t v = static_cast<uint32_t>(std::stoul(text));
  if (v < 1 || v > 32) return std::nullopt;
  return v;
}

}  // namespace wisp
