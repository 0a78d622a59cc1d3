// The guest's address on eth0 as the VMM puts it on the kernel command line
// (`wisp.net=ADDR/PREFIX,GW,MTU`, GW "-" for none; vmm/virtio/net/net_state.h writes it):
// parsed here (pure, unit-tested), applied by guest_network.cc at boot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace wisp::agent {

struct GuestNetConfig {
  uint32_t address = 0;  // network byte order
  uint32_t prefix = 0;   // 1..32
  uint32_t gateway = 0;  // network byte order; 0: no default route
  uint32_t mtu = 1500;   // 68..65535
  bool operator==(const GuestNetConfig&) const = default;
};

// The wisp.net word of `cmdline` (the whole of /proc/cmdline); nullopt when there is none.
// A malformed one sets *error (and returns nullopt): the host wrote it, but a VM's agent
// should say what it refused rather than guess.
std::optional<GuestNetConfig> parse_guest_net(const std::string& cmdline, std::string* error);

// The guest's resolver from the `wisp.dns=ADDR` word of `cmdline` (`wisp exec --dns`; the last
// one wins), as its dotted quad; nullopt when there is none, or (with *error set) when it is
// not an IPv4 address.
std::optional<std::string> parse_guest_dns(const std::string& cmdline, std::string* error);

// What /etc/resolv.conf holds for resolver `address`.
std::string resolv_conf(const std::string& address);

}  // namespace wisp::agent
