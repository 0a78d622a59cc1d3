// A TAP interface as a virtio-net back-end: /dev/net/tun attached to an existing TAP by name,
// IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with a 12-byte vnet header (virtio_net_hdr_v1, so frames
// pass between the rings and the TAP without reshaping), non-blocking. Offloads start off (the
// kernel hands over only plain frames) until the guest negotiates them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "vmm/virtio/net/net_backend.h"

namespace wisp {

// A TAP opened by someone else (wisp-vmm opens its TAPs before it enters the jail, whose new
// network namespace and empty /dev hold none): TapBackend::open(name) takes `fd` instead of
// opening the name. Each is taken once. Throws Error for a name given twice.
void provide_tap_fd(const std::string& name, UniqueFd fd);
// The descriptors given and not taken yet: the jail must keep them open.
std::vector<int> provided_tap_fds();

// Opens /dev/net/tun and attaches it to the existing TAP `name` (IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR, TUNSETVNETHDRSZ 12, offloads off, O_NONBLOCK). Throws Error naming the TAP:
// no such TAP (or one of another type), no permission.
UniqueFd open_tap(const std::string& name);

class TapBackend final : public NetBackend {
 public:
  // The provided descriptor for `name`, else open_tap(name). Throws Error.
  static std::unique_ptr<TapBackend> open(const std::string& name);
  explicit TapBackend(UniqueFd fd) : fd_(std::move(fd)) {}

  int poll_fd() const override { return fd_.get(); }
  ssize_t send(std::span<const iovec> frame) override;
  ssize_t receive(std::span<uint8_t> out) override;
  int set_offloads(const NetOffloads& offloads) override;

 private:
  UniqueFd fd_;
};

}  // namespace wisp
