#include "agent/guest_network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "agent/guest_net_config.h"
#include "agent/pid1.h"

namespace wisp::agent {
namespace {

sockaddr ipv4(uint32_t addr) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = addr;
  sockaddr out;
  std::memcpy(&out, &in, sizeof(in));
  return out;
}

// false (logged) when `request` fails on interface `name`.
bool if_ioctl(int fd, unsigned long request, const char* what, const char* name, ifreq* ifr) {
  std::strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, request, ifr) == 0) return true;
  console_log("network: %s %s: %s", name, what, std::strerror(errno));
  return false;
}

bool set_up(int fd, const char* name) {
  ifreq ifr{};
  if (!if_ioctl(fd, SIOCGIFFLAGS, "get flags", name, &ifr)) return false;
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  return if_ioctl(fd, SIOCSIFFLAGS, "up", name, &ifr);
}

void configure_eth0(int fd, const GuestNetConfig& c) {
  ifreq ifr{};
  ifr.ifr_addr = ipv4(c.address);
  if (!if_ioctl(fd, SIOCSIFADDR, "address", "eth0", &ifr)) return;
  ifr = {};
  ifr.ifr_netmask = ipv4(htonl(c.prefix == 32 ? ~0u : ~(~0u >> c.prefix)));
  if (!if_ioctl(fd, SIOCSIFNETMASK, "netmask", "eth0", &ifr)) return;
  ifr = {};
  ifr.ifr_mtu = static_cast<int>(c.mtu);
  if (!if_ioctl(fd, SIOCSIFMTU, "mtu", "eth0", &ifr)) return;
  if (!set_up(fd, "eth0") || c.gateway == 0) return;
  rtentry route{};
  route.rt_dst = ipv4(0);
  route.rt_genmask = ipv4(0);
  route.rt_gateway = ipv4(c.gateway);
  route.rt_flags = RTF_UP | RTF_GATEWAY;
  char dev[] = "eth0";
  route.rt_dev = dev;
  if (ioctl(fd, SIOCADDRT, &route) != 0)
    console_log("network: eth0 default route: %s", std::strerror(errno));
}

// /etc/resolv.conf for `address`: a file of its own (a rootfs image may hold a symlink into a
// resolver daemon's directory, which this guest does not run). Handlers see it in their
// read-only view of the root (sandbox.cc).
void write_resolv_conf(const std::string& address) {
  mkdir("/etc", 0755);
  unlink("/etc/resolv.conf");
  int fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  std::string text = resolv_conf(address);
  if (fd < 0 || write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    console_log("network: /etc/resolv.conf: %s", std::strerror(errno));
  if (fd >= 0) close(fd);
}

// The guest kernel has IPv6 only because CRIU's network lock needs nf_tables' inet family
// (guest/kernel/wisp-microvm.config). The guest's network stays IPv4 as it always was: no
// link-local address, router solicitation or duplicate-address probe leaves eth0, and an
// allow-list or rate limit on the host sees only the traffic the function makes.
void keep_ipv4_only() {
  for (const char* path : {"/proc/sys/net/ipv6/conf/all/disable_ipv6",
                           "/proc/sys/net/ipv6/conf/default/disable_ipv6"}) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) continue;  // a kernel without IPv6: nothing to turn off
    if (write(fd, "1", 1) != 1) console_log("network: %s: %s", path, std::strerror(errno));
    close(fd);
  }
}

}  // namespace

void set_up_guest_network() {
  keep_ipv4_only();
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    console_log("network: socket: %s", std::strerror(errno));
    return;
  }
  set_up(fd, "lo");
  std::ifstream in("/proc/cmdline");
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string error;
  if (std::optional<GuestNetConfig> c = parse_guest_net(cmdline, &error))
    configure_eth0(fd, *c);
  else if (!error.empty())
    console_log("network: %s", error.c_str());
  error.clear();
  if (std::optional<std::string> dns = parse_guest_dns(cmdline, &error))
    write_resolv_conf(*dns);
  else if (!error.empty())
    console_log("network: %s", error.c_str());
  close(fd);
}

}  // namespace wisp::agent
