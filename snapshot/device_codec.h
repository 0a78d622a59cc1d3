// Device States <-> the bytes of a DeviceState entry's `data` (schema: snapshot/devices.capnp).
// The machine's snapshot code stores a serial port as kind "serial" and each virtio-mmio slot
// (transport plus device) as kind "virtio-mmio", and calls these to fill and read `data`.
//
// Decoding takes untrusted bytes: it bounds the message (traversal limit) and every list and
// byte string, and throws wisp::Error "<what>: ..." for anything malformed, never crashes. It
// does not check the values against a device: Serial::restore, VirtioDevice::restore_state and
// MmioTransport::restore do.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>

#include "snapshot/snapshot_state.h"
#include "vmm/devices/serial.h"
#include "vmm/virtio/device_state.h"
#include "vmm/virtio/mmio_transport.h"

namespace wisp::snapshot {

Bytes encode_serial(const wisp::SerialState& state);
wisp::SerialState decode_serial(std::span<const uint8_t> data, const std::string& what);

// One virtio-mmio slot: the transport's registers and queues, and its device's own state.
struct VirtioSlotState {
  wisp::MmioTransportState transport;
  wisp::VirtioDeviceState device;
  bool operator==(const VirtioSlotState&) const = default;
};

Bytes encode_virtio(const VirtioSlotState& state);
VirtioSlotState decode_virtio(std::span<const uint8_t> data, const std::string& what);

}  // namespace wisp::snapshot
