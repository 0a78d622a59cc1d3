#include "manager/host_net/address_plan.h"

#include <arpa/inet.h>

#include "base/error.h"
#include "base/ipv4.h"

namespace wisp::host_net {
namespace {

std::string dotted(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  return ::inet_ntop(AF_INET, &a, buf, sizeof(buf));
}

}  // namespace

SlotAddresses slot_addresses(uint32_t slot) {
  if (slot >= kMaxSlots)
    throw Error("no free network slot: " + std::to_string(kMaxSlots) +
                " VMs with their own network are running");
  uint32_t subnet = ntohl(*parse_ipv4(kVethBase)) + 4 * slot;
  return {kHostVethPrefix + std::to_string(slot), dotted(subnet + 1), dotted(subnet + 2)};
}

std::string guest_net_option() {
  return std::string("tap=") + kTapName + ",ip=" + kGuestAddress + "/" +
         std::to_string(kInnerPrefix) + ",gw=" + kGatewayAddress;
}

}  // namespace wisp::host_net
