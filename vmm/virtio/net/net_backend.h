// Where a virtio-net device's frames go and come from, knowing nothing of virtio rings: a
// frame is a 12-byte virtio_net_hdr_v1 followed by the Ethernet frame, both ways (the TAP
// back-end has the kernel speak that header too). TapBackend (tap_backend.h) is the real one;
// tests and the fuzzer use stand-ins.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>

namespace wisp {

// Offloads the guest accepts in frames it receives (TUN_F_* in the TAP back-end).
struct NetOffloads {
  bool csum = false;  // partial checksums (VIRTIO_NET_F_GUEST_CSUM)
  bool tso4 = false;  // TCP segmentation over IPv4 (GUEST_TSO4)
  bool tso6 = false;  // ... over IPv6 (GUEST_TSO6)
  bool operator==(const NetOffloads&) const = default;
};

class NetBackend {
 public:
  virtual ~NetBackend() = default;
  // An fd that polls readable when receive() has a frame (the event loop watches it through
  // the device), or -1 for none.
  virtual int poll_fd() const = 0;
  // Sends one frame (header + Ethernet frame). Returns the bytes taken or -errno.
  virtual ssize_t send(std::span<const iovec> frame) = 0;
  // Reads one frame into `out`; -EAGAIN when none is waiting, else -errno or the length.
  virtual ssize_t receive(std::span<uint8_t> out) = 0;
  // What the guest can take; 0 or -errno.
  virtual int set_offloads(const NetOffloads& offloads) = 0;
};

}  // namespace wisp
