// A VM's own network (bare `--net`), owned by RAII: an anonymous network namespace holding the
// persistent TAP wisp0 (the guest's gateway) and one end of a veth pair whose host end is
// `wv<N>`; the egress allow-list and the NAT as an nftables table inside the namespace; the
// address plan of address_plan.h. wisp-vmm enters the namespace (--netns-fd), opens wisp0 there
// and keeps the namespace alive while it runs.
//
// What it leaves on the host: the veth's host end (with its address and per-device forwarding
// switch), nothing else (no host-wide rule or sysctl). The destructor deletes that link, which
// takes its peer with it; and because the namespace is anonymous, a VM whose manager was
// SIGKILLed loses its namespace, and so the veth, when its VMM dies (it dies with its manager,
// VmmChild's lifeline): nothing is left to sweep.
#pragma once

#include <memory>
#include <vector>

#include "base/unique_fd.h"
#include "manager/host_net/address_plan.h"
#include "manager/host_net/egress_rule.h"

namespace wisp::host_net {

class VmNetwork {
 public:
  // Builds the namespace, takes the first free slot (the kernel's EEXIST on the veth name is
  // the lock, so concurrent VMs of any number of wisp processes get distinct slots), wires both
  // ends and applies the ruleset for `allow`. Needs root (CAP_NET_ADMIN). Throws Error saying
  // which step failed; nothing is left behind then.
  static std::unique_ptr<VmNetwork> create(const std::vector<EgressRule>& allow);
  ~VmNetwork();
  VmNetwork(const VmNetwork&) = delete;
  VmNetwork& operator=(const VmNetwork&) = delete;

  int netns_fd() const { return netns_.get(); }
  const SlotAddresses& slot() const { return slot_; }

 private:
  VmNetwork(UniqueFd netns, SlotAddresses slot) : netns_(std::move(netns)), slot_(slot) {}
  UniqueFd netns_;
  SlotAddresses slot_;
};

}  // namespace wisp::host_net
