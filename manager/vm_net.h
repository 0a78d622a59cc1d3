// The network of a function VM as its maker asked for it, which a template records and every
// clone of it restores with: the `--net` options as given (not only a TAP name), so that each
// mode of `--net` rides on the same record, and the egress policy beside them.
#pragma once

#include <string>
#include <vector>

namespace wisp::manager {

struct VmNet {
  // Each `--net` value as given, eth0 first: "tap=NAME[,mac=MAC][,ip=ADDR/PREFIX][,gw=ADDR]"
  // for a TAP of the caller's (the clone reopens it by that name before its jail).
  std::vector<std::string> nets;
  // Namespace mode's policy (issue 14 item 3: `--allow CIDR[:PORT]`, `--dns ADDR`), recorded
  // as given; empty for tap= NICs, whose network is the caller's business.
  std::vector<std::string> allow;
  std::vector<std::string> dns;

  bool empty() const { return nets.empty() && allow.empty() && dns.empty(); }
  bool operator==(const VmNet&) const = default;
};

// The `wisp-vmm restore` arguments that give a clone its NICs: "--net VALUE" for each, in
// order. A value's TAP is the one the clone opens; the guest keeps the MAC and address it had.
std::vector<std::string> vmm_restore_net_args(const VmNet& net);

}  // namespace wisp::manager
