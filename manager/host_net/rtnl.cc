#include "manager/host_net/rtnl.h"

#include <fcntl.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <sys/socket.h>

#include <memory>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"

namespace wisp::host_net {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw Error(what + ": " + nl_geterror(err));
}

struct LinkPut {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct AddrPut {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using Link = std::unique_ptr<rtnl_link, LinkPut>;
using NlAddr = std::unique_ptr<nl_addr, AddrPut>;

NlAddr parse_addr(const std::string& text) {
  nl_addr* a = nullptr;
  if (int err = nl_addr_parse(text.c_str(), AF_INET, &a); err < 0) fail("address " + text, err);
  return NlAddr(a);
}

// Opened by this thread, so /proc/sys/net is the thread's namespace's.
void write_sysctl(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd || !write_all(fd.get(), value)) throw_errno("setting " + path);
}

}  // namespace

Rtnl::Rtnl() {
  sock_ = nl_socket_alloc();
  if (!sock_) throw Error("netlink: out of memory");
  if (int err = nl_connect(sock_, NETLINK_ROUTE); err < 0) {
    nl_socket_free(sock_);
    fail("netlink: connecting to rtnetlink", err);
  }
}

Rtnl::~Rtnl() { nl_socket_free(sock_); }

int Rtnl::ifindex(const std::string& dev) {
  rtnl_link* l = nullptr;
  if (int err = rtnl_link_get_kernel(sock_, 0, dev.c_str(), &l); err < 0)
    fail("network device " + dev, err);
  Link link(l);
  return rtnl_link_get_ifindex(l);
}

bool Rtnl::add_veth(const std::string& name, const std::string& peer_name, int peer_netns_fd) {
  Link link(rtnl_link_veth_alloc());
  if (!link) throw Error("netlink: out of memory");
  rtnl_link_set_name(link.get(), name.c_str());
  Link peer(rtnl_link_veth_get_peer(link.get()));
  rtnl_link_set_name(peer.get(), peer_name.c_str());
  rtnl_link_set_ns_fd(peer.get(), peer_netns_fd);
  int err = rtnl_link_add(sock_, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err == -NLE_EXIST) return false;
  if (err < 0) fail("creating the veth pair " + name, err);
  return true;
}

bool Rtnl::delete_link(const std::string& name) {
  Link link(rtnl_link_alloc());
  rtnl_link_set_name(link.get(), name.c_str());
  return rtnl_link_delete(sock_, link.get()) == 0;
}

void Rtnl::add_address(const std::string& dev, const std::string& address, uint32_t prefix) {
  int index = ifindex(dev);
  std::unique_ptr<rtnl_addr, void (*)(rtnl_addr*)> a(rtnl_addr_alloc(), rtnl_addr_put);
  NlAddr local = parse_addr(address + "/" + std::to_string(prefix));
  rtnl_addr_set_ifindex(a.get(), index);
  rtnl_addr_set_local(a.get(), local.get());
  rtnl_addr_set_prefixlen(a.get(), static_cast<int>(prefix));
  if (int err = rtnl_addr_add(sock_, a.get(), 0); err < 0)
    fail("adding " + address + " to " + dev, err);
}

void Rtnl::set_up(const std::string& dev, uint32_t mtu) {
  rtnl_link* l = nullptr;
  if (int err = rtnl_link_get_kernel(sock_, 0, dev.c_str(), &l); err < 0)
    fail("network device " + dev, err);
  Link orig(l);
  Link change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (mtu) rtnl_link_set_mtu(change.get(), mtu);
  if (int err = rtnl_link_change(sock_, orig.get(), change.get(), 0); err < 0)
    fail("setting " + dev + " up", err);
}

void Rtnl::add_default_route(const std::string& dev, const std::string& gateway) {
  int index = ifindex(dev);
  std::unique_ptr<rtnl_route, void (*)(rtnl_route*)> r(rtnl_route_alloc(), rtnl_route_put);
  NlAddr dst = parse_addr("0.0.0.0/0");
  NlAddr gw = parse_addr(gateway);
  rtnl_route_set_family(r.get(), AF_INET);
  rtnl_route_set_dst(r.get(), dst.get());
  rtnl_route_set_table(r.get(), RT_TABLE_MAIN);
  rtnl_route_set_protocol(r.get(), RTPROT_STATIC);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();  // owned by the route once added
  rtnl_route_nh_set_gateway(nh, gw.get());
  rtnl_route_nh_set_ifindex(nh, index);
  rtnl_route_add_nexthop(r.get(), nh);
  if (int err = rtnl_route_add(sock_, r.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0)
    fail("the default route via " + gateway, err);
}

void enable_forwarding(const std::string& dev) {
  write_sysctl("/proc/sys/net/ipv4/conf/" + dev + "/forwarding", "1");
}

void disable_ipv6(const std::string& dev) {
  write_sysctl("/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6", "1");
}

}  // namespace wisp::host_net
