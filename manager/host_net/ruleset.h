// The nftables ruleset of a VM's own network namespace, as the text libnftables reads: what
// the egress allow-list and the NAT of the address plan (address_plan.h) become. Pure text, so
// a unit test reads exactly what the kernel is given.
#pragma once

#include <string>
#include <vector>

#include "manager/host_net/egress_rule.h"

namespace wisp::host_net {

// The table `ip wisp` in the VM's namespace:
//  - forward (policy drop): replies (established/related) pass; from the TAP, nothing but the
//    guest's own source address, and of that TCP and UDP to each allowed CIDR[:PORT]; anything
//    else from the TAP is refused at once (a TCP reset, an ICMP "administratively
//    prohibited"), so a blocked connect fails fast instead of hanging;
//  - input: from the TAP only replies, so the namespace's own addresses are unreachable;
//  - postrouting: the guest's fixed address SNATed to `ns_address` (the slot's veth end) on its
//    way out of `kInnerVethName`.
std::string namespace_ruleset(const std::vector<EgressRule>& allow, const std::string& ns_address);

}  // namespace wisp::host_net
