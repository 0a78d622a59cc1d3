// The network of a function VM as its maker asked for it, which a template records and every
// clone of it restores with: the `--net` options as given (not only a TAP name), so that each
// mode of `--net` rides on the same record, and the egress policy beside them.
#pragma once

#include <string>
#include <vector>

namespace wisp::manager {

// A VM's own network (bare `--net`, manager/host_net/): plain data, so a template can carry it
// and every clone restored from it gets a network of its own made the same way.
struct VmNetworkSpec {
  bool own = false;                // bare --net: its own namespace, TAP wisp0, veth and NAT
  std::vector<std::string> allow;  // --allow, canonical CIDR[:PORT] (host_net::to_string)
  std::string dns;                 // --dns ADDR: the guest's resolver; "" none
  // --net-limit: the NIC's rate keys ("tx-bw=10M,refill-ms=100", base/rate_limit_option.h),
  // appended to its wisp-vmm --net; "" none. A snapshot holds them, so clones keep them.
  std::string limits;
};

struct VmNet {
  // Each `--net tap=` value as given, in NIC order after the own NIC (if any):
  // "tap=NAME[,mac=MAC][,ip=ADDR/PREFIX][,gw=ADDR]" for a TAP of the caller's (the clone
  // reopens it by that name before its jail).
  std::vector<std::string> nets;
  // Bare `--net`: the VM had a network namespace of its own, its eth0 on the TAP wisp0 there;
  // each clone gets a new one made the same way, with the same policy (allow).
  bool own = false;
  // Namespace mode's policy (`--allow CIDR[:PORT]`, `--dns ADDR`), as given. The resolver is
  // the guest's own file by then: a clone keeps it; it is recorded to say what the VM had.
  std::vector<std::string> allow;
  std::vector<std::string> dns;

  bool empty() const { return nets.empty() && !own && allow.empty() && dns.empty(); }
  bool operator==(const VmNet&) const = default;
};

// What a template records of a VM booted with `nets` (tap= values) and `network`.
VmNet record_net(const std::vector<std::string>& nets, const VmNetworkSpec& network);

// The network a clone of a VM recorded as `net` makes for itself (own: a new namespace).
VmNetworkSpec clone_network(const VmNet& net);

// The `wisp-vmm restore` arguments that give a clone its NICs: "--net VALUE" for each, in
// order, the own NIC's TAP (wisp0, in the clone's new namespace) first. A value's TAP is the
// one the clone opens; the guest keeps the MAC and address it had.
std::vector<std::string> vmm_restore_net_args(const VmNet& net);

}  // namespace wisp::manager
