// One entry of a VM's egress allow-list, `--allow CIDR[:PORT]`: the guest may open TCP and UDP
// flows to addresses in CIDR (on PORT only, when given). Nothing else leaves the VM's
// namespace: no rule, no traffic (the host's own addresses included).
#pragma once

#include <cstdint>
#include <string>

namespace wisp::host_net {

struct EgressRule {
  std::string network;  // canonical "A.B.C.D/N" (host bits cleared)
  uint16_t port = 0;    // 0: every port
};

// Parses "A.B.C.D[/N][:PORT]" (no /N: /32; PORT 1-65535). Throws UsageError naming --allow,
// the text and the bad part ("10.0.0.300/24: the address is not a dotted quad").
EgressRule parse_egress_rule(const std::string& text);

// Back to the text it was parsed from, canonical ("10.0.0.0/8:443"): what a spec stores.
std::string to_string(const EgressRule& rule);

}  // namespace wisp::host_net
