#include "manager/host_net/vm_network.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <cstring>

#include "base/error.h"
#include "manager/host_net/netns.h"
#include "manager/host_net/nft.h"
#include "manager/host_net/rtnl.h"
#include "manager/host_net/ruleset.h"

namespace wisp::host_net {
namespace {

// The TAP the VMM attaches to by name (vmm/virtio/net/tap_backend: IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR, single queue). Persistent, so it exists, addressed and up, before the VMM opens
// it and between its opens; it goes with the namespace.
void create_persistent_tap(const char* name) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd) throw_errno("opening /dev/net/tun (is the tun module loaded?)");
  ifreq ifr;
  std::memset(&ifr, 0, sizeof(ifr));
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) throw_errno(std::string("creating TAP ") + name);
  if (::ioctl(fd.get(), TUNSETPERSIST, 1) != 0)
    throw_errno(std::string("making TAP ") + name + " persistent");
}

// Inside the new namespace: lo, and the TAP as the guest's gateway.
void set_up_inside() {
  Rtnl rtnl;
  rtnl.set_up("lo");
  create_persistent_tap(kTapName);
  disable_ipv6(kTapName);
  rtnl.add_address(kTapName, kGatewayAddress, kInnerPrefix);
  rtnl.set_up(kTapName, kMtu);
  enable_forwarding(kTapName);
}

// Inside again, once the veth's peer is there: its address, the route out, the ruleset.
void wire_inside(const SlotAddresses& slot, const std::vector<EgressRule>& allow) {
  Rtnl rtnl;
  rtnl.add_address(kInnerVethName, slot.ns_address, kVethPrefix);
  rtnl.set_up(kInnerVethName);
  rtnl.add_default_route(kInnerVethName, slot.host_address);
  enable_forwarding(kInnerVethName);
  apply_nft_ruleset(namespace_ruleset(allow, slot.ns_address));
}

}  // namespace

std::unique_ptr<VmNetwork> VmNetwork::create(const std::vector<EgressRule>& allow) {
  UniqueFd netns;
  try {
    netns = new_netns(set_up_inside);
  } catch (const Error& e) {
    throw Error(std::string("the VM's network namespace: ") + e.what());
  }
  Rtnl host;
  uint32_t n = 0;
  while (!host.add_veth(slot_addresses(n).host_veth, kInnerVethName, netns.get())) ++n;
  std::unique_ptr<VmNetwork> net(new VmNetwork(std::move(netns), slot_addresses(n)));
  // From here the destructor removes the veth whatever fails.
  const SlotAddresses& slot = net->slot_;
  try {
    host.add_address(slot.host_veth, slot.host_address, kVethPrefix);
    host.set_up(slot.host_veth);
    enable_forwarding(slot.host_veth);
    in_netns(net->netns_fd(), [&] { wire_inside(slot, allow); });
  } catch (const Error& e) {
    throw Error("the VM's network (" + slot.host_veth + "): " + e.what());
  }
  return net;
}

VmNetwork::~VmNetwork() {
  // The pair goes at once (both ends), not when the kernel gets round to a dead namespace.
  try {
    Rtnl host;
    host.delete_link(slot_.host_veth);
  } catch (const Error&) {
    // Netlink unavailable: the namespace's end (and so the pair) still goes with its last fd.
  }
}

}  // namespace wisp::host_net
