// The fixed address plan of a VM's own network namespace (bare `--net`). Inside, every VM is
// the same, so clones of one snapshot come up with the addresses they were saved with: the TAP
// wisp0 is the gateway 172.16.0.1/30, the guest 172.16.0.2/30, MTU 1500. The namespace reaches
// the host through a veth pair whose ends differ per VM: slot N gets the host end `wv<N>` and
// the /30 kVethBase + 4N (host end .1, namespace end .2), and the guest's traffic leaves the
// namespace SNATed to its namespace end, so clones with identical insides coexist.
#pragma once

#include <cstdint>
#include <string>

namespace wisp::host_net {

constexpr char kTapName[] = "wisp0";        // the VM's TAP, inside its namespace
constexpr char kInnerVethName[] = "veth0";  // the namespace's end of the veth pair
constexpr char kGuestAddress[] = "172.16.0.2";
constexpr char kGatewayAddress[] = "172.16.0.1";
constexpr uint32_t kInnerPrefix = 30;
constexpr uint32_t kMtu = 1500;
// The veth subnets: 10.200.0.0/16, one /30 per slot.
constexpr char kVethBase[] = "10.200.0.0";
constexpr uint32_t kVethPrefix = 30;
constexpr uint32_t kMaxSlots = 16384;
// Host-side link names start with this ("wv7"): what the test and an operator look for.
constexpr char kHostVethPrefix[] = "wv";

struct SlotAddresses {
  std::string host_veth;     // "wv7"
  std::string host_address;  // "10.200.0.29": the host end, the namespace's default gateway
  std::string ns_address;    // "10.200.0.30": the namespace end, the guest's SNAT address
};

// Slot `slot` (< kMaxSlots) of the plan. Throws Error past the last slot.
SlotAddresses slot_addresses(uint32_t slot);

// "tap=wisp0,ip=172.16.0.2/30,gw=172.16.0.1": the wisp-vmm --net that the namespace's TAP and
// the guest's fixed address make.
std::string guest_net_option();

}  // namespace wisp::host_net
