// IPv4 text as wisp's network options write it: the host's `--net ip=ADDR/PREFIX,gw=ADDR` and
// the guest agent's `wisp.net=` kernel command-line word parse it alike.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace wisp {

// A dotted quad ("10.0.0.2"), in network byte order; nullopt for anything else.
std::optional<uint32_t> parse_ipv4(const std::string& text);

// A prefix length, "1" to "32" (decimal digits only); nullopt for anything else.
std::optional<uint32_t> parse_prefix_length(const std::string& text);

}  // namespace wisp
