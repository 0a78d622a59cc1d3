// The few rtnetlink operations a VM's network needs (libnl-route-3), on the network namespace
// of the calling thread: a socket is bound to the namespace of the thread that opens it, so a
// thread that entered a VM's namespace (netns.h) configures that namespace.
#pragma once

#include <cstdint>
#include <string>

struct nl_sock;

namespace wisp::host_net {

class Rtnl {
 public:
  // Opens an rtnetlink socket in the calling thread's namespace. Throws Error.
  Rtnl();
  ~Rtnl();
  Rtnl(const Rtnl&) = delete;
  Rtnl& operator=(const Rtnl&) = delete;

  // A veth pair: `name` here, its peer `peer_name` created straight in the namespace
  // `peer_netns_fd`. Returns false when a link `name` exists already (EEXIST: the name is
  // taken, which makes the name a lock between processes); throws Error for anything else.
  bool add_veth(const std::string& name, const std::string& peer_name, int peer_netns_fd);
  // Deletes link `name`; false when there is none.
  bool delete_link(const std::string& name);
  // `address`/`prefix` on link `dev`. Throws Error naming the device.
  void add_address(const std::string& dev, const std::string& address, uint32_t prefix);
  // Sets link `dev` up (and its MTU when `mtu` is not 0). Throws Error naming the device.
  void set_up(const std::string& dev, uint32_t mtu = 0);
  // The default route through `gateway` on `dev`. Throws Error.
  void add_default_route(const std::string& dev, const std::string& gateway);

 private:
  int ifindex(const std::string& dev);
  nl_sock* sock_ = nullptr;
};

// Writes "1" to net.ipv4.conf.<dev>.forwarding in the calling thread's namespace: forwarding
// per device, never the host-wide switch. Throws Error.
void enable_forwarding(const std::string& dev);
// net.ipv6.conf.<dev>.disable_ipv6 = 1: the guest's side of a VM's network speaks IPv4 only,
// so nothing of it reaches the namespace over a link-local IPv6 address. Throws Error.
void disable_ipv6(const std::string& dev);

}  // namespace wisp::host_net
