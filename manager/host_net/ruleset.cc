#include "manager/host_net/ruleset.h"

#include "manager/host_net/address_plan.h"

namespace wisp::host_net {

std::string namespace_ruleset(const std::vector<EgressRule>& allow, const std::string& ns_address) {
  const std::string tap = std::string("iifname \"") + kTapName + "\" ";
  std::string s = "table ip wisp {\n";
  s += "  chain forward {\n";
  s += "    type filter hook forward priority filter; policy drop;\n";
  s += "    ct state established,related accept\n";
  // Only the guest's own address leaves: a guest that forges its source would otherwise slip
  // past the SNAT (which matches that address) and reach allowed hosts under any address.
  s += "    " + tap + "ip saddr != " + kGuestAddress + " drop\n";
  for (const EgressRule& r : allow) {
    std::string head = "    " + tap + "ip daddr " + r.network + " ";
    if (r.port) {
      std::string port = std::to_string(r.port);
      s += head + "tcp dport " + port + " accept\n";
      s += head + "udp dport " + port + " accept\n";
    } else {
      s += head + "meta l4proto { tcp, udp } accept\n";
    }
  }
  s += "    " + tap + "meta l4proto tcp reject with tcp reset\n";
  s += "    " + tap + "reject with icmp type admin-prohibited\n";
  s += "  }\n";
  s += "  chain input {\n";
  s += "    type filter hook input priority filter; policy accept;\n";
  s += "    " + tap + "ct state established,related accept\n";
  s += "    " + tap + "drop\n";
  s += "  }\n";
  s += "  chain postrouting {\n";
  s += "    type nat hook postrouting priority srcnat; policy accept;\n";
  s += std::string("    oifname \"") + kInnerVethName + "\" ip saddr " + kGuestAddress +
       " snat to " + ns_address + "\n";
  s += "  }\n";
  s += "}\n";
  return s;
}

}  // namespace wisp::host_net
