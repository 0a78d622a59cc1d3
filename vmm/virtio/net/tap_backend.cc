#include "vmm/virtio/net/tap_backend.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

#include "base/error.h"

namespace wisp {
namespace {

// virtio_net_hdr_v1: the legacy 10 bytes plus num_buffers. The TAP writes 10 and skips 2.
constexpr int kVnetHeaderBytes = 12;

std::mutex provided_mutex;
std::map<std::string, UniqueFd>& provided_fds() {
  static std::map<std::string, UniqueFd> fds;
  return fds;
}

UniqueFd take_provided_fd(const std::string& name) {
  std::lock_guard lock(provided_mutex);
  auto it = provided_fds().find(name);
  if (it == provided_fds().end()) return UniqueFd();
  UniqueFd fd = std::move(it->second);
  provided_fds().erase(it);
  return fd;
}

}  // namespace

void provide_tap_fd(const std::string& name, UniqueFd fd) {
  std::lock_guard lock(provided_mutex);
  if (!provided_fds().emplace(name, std::move(fd)).second)
    throw Error("TAP " + name + " is given twice");
}

std::vector<int> provided_tap_fds() {
  std::lock_guard lock(provided_mutex);
  std::vector<int> out;
  for (const auto& [name, fd] : provided_fds()) out.push_back(fd.get());
  return out;
}

UniqueFd open_tap(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    throw Error("TAP \"" + name + "\": not an interface name (1.." + std::to_string(IFNAMSIZ - 1) +
                " bytes)");
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) throw_errno("TAP " + name + ": open /dev/net/tun");
  // Attach only: without the interface in place, TUNSETIFF would create a fresh one, which
  // nobody configured. if_nametoindex tells apart "no such TAP" from the ioctl's errors.
  if (if_nametoindex(name.c_str()) == 0)
    throw Error("TAP " + name + ": no such network interface in this network namespace " +
                "(create it first: ip tuntap add dev " + name + " mode tap)");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    int e = errno;
    std::string msg = errno_message("TAP " + name + ": attach (TUNSETIFF)");
    if (e == EINVAL) msg += " (is it a TAP, not a TUN or another kind of interface?)";
    if (e == EPERM) msg += " (needs CAP_NET_ADMIN or a TAP owned by this user)";
    if (e == EBUSY) msg += " (another process has it open)";
    throw Error(msg);
  }
  int hdr = kVnetHeaderBytes;
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) != 0)
    throw_errno("TAP " + name + ": TUNSETVNETHDRSZ");
  if (::ioctl(fd.get(), TUNSETOFFLOAD, 0UL) != 0) throw_errno("TAP " + name + ": TUNSETOFFLOAD");
  return fd;
}

std::unique_ptr<TapBackend> TapBackend::open(const std::string& name) {
  UniqueFd fd = take_provided_fd(name);
  if (!fd) fd = open_tap(name);
  return std::make_unique<TapBackend>(std::move(fd));
}

ssize_t TapBackend::send(std::span<const iovec> frame) {
  for (;;) {
    ssize_t n = ::writev(fd_.get(), frame.data(), static_cast<int>(frame.size()));
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

ssize_t TapBackend::receive(std::span<uint8_t> out) {
  for (;;) {
    ssize_t n = ::read(fd_.get(), out.data(), out.size());
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

int TapBackend::set_offloads(const NetOffloads& o) {
  unsigned long flags = 0;
  // TSO without checksum offload is not a combination the kernel accepts.
  if (o.csum) {
    flags |= TUN_F_CSUM;
    if (o.tso4) flags |= TUN_F_TSO4;
    if (o.tso6) flags |= TUN_F_TSO6;
  }
  return ::ioctl(fd_.get(), TUNSETOFFLOAD, flags) == 0 ? 0 : -errno;
}

}  // namespace wisp
