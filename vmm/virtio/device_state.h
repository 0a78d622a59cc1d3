// The saved state of each virtio device (DESIGN.md rule 1): plain data, no fds, no host
// pointers, untrusted when it comes from a snapshot. What a device keeps beyond its queues is
// small: the rings belong to the transport's state (MmioTransportState), and connections,
// open files and sockets are not saved at all; restore rebuilds the device from the same
// configuration and checks that it still matches what the guest saw.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "base/error.h"

namespace wisp {

// virtio-blk. The guest read these from the config space and feature bits: a restored disk
// must show the same, or the guest's idea of the disk is wrong.
struct BlockState {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  uint32_t seg_max = 0;  // config space seg_max (VIRTIO_BLK_F_SEG_MAX)
  bool operator==(const BlockState&) const = default;
};

// virtio-rng keeps nothing besides its queue.
struct RngState {
  bool operator==(const RngState&) const = default;
};

// virtio-vsock. The guest kernel knows its CID; the restored device takes it over whatever its
// configuration said. Connections are not saved: restore tells the guest TRANSPORT_RESET.
struct VsockState {
  uint64_t guest_cid = 0;
  bool operator==(const VsockState&) const = default;
};

using VirtioDeviceState = std::variant<BlockState, RngState, VsockState>;

// The device a state belongs to, named as VirtioDevice::name() does ("virtio-blk", ...).
inline const char* device_state_kind(const VirtioDeviceState& s) {
  switch (s.index()) {
    case 0:
      return "virtio-blk";
    case 1:
      return "virtio-rng";
    default:
      return "virtio-vsock";
  }
}

// The alternative `device` expects; throws Error when the saved state is another device's.
template <typename T>
const T& expect_device_state(const VirtioDeviceState& s, const char* device) {
  if (const T* state = std::get_if<T>(&s)) return *state;
  throw Error(std::string(device) + ": saved state is a " + device_state_kind(s) + "'s");
}

}  // namespace wisp
