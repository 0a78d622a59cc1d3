// The devices of a snapshot's machine <-> Cap'n Proto (schema: snapshot/devices.capnp): the
// serial port's SerialState and each virtio-mmio slot's VirtioSlotState (its transport, and its
// device's kind, Spec and State). state_codec.cc uses the builder/reader forms for the machine's
// lists; the byte forms (one message each) are for tests and fuzzers.
//
// A virtio kind's Spec and State are encoded through the table of kinds (vmm/virtio/
// device_kinds.h): their fields() name the members, the kind's kName the schema's union member,
// so there is no code here per kind.
//
// Decoding takes untrusted input: it bounds every list before decoding it and throws
// wisp::Error for anything malformed, never crashes. It does not check the values: each State's
// validate() and the devices' restore do.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "snapshot/devices.capnp.h"
#include "snapshot/snapshot_state.h"
#include "vmm/devices/serial.h"
#include "vmm/machine/machine_state.h"

namespace wisp::snapshot {

void encode_serial(const SerialState& state, device_schema::SerialState::Builder out);
SerialState decode_serial(device_schema::SerialState::Reader in);

// Throws Error when the slot's state is not of its spec's kind.
void encode_virtio(const VirtioSlotState& slot, device_schema::VirtioDevice::Builder out);
// Throws Error for a kind this wisp does not know (a newer writer's, or garbage).
VirtioSlotState decode_virtio(device_schema::VirtioDevice::Reader in);

// One message each. Decoding throws Error("<what>: malformed <serial|virtio-mmio> state: ...").
Bytes encode_serial(const SerialState& state);
SerialState decode_serial(std::span<const uint8_t> data, const std::string& what);
Bytes encode_virtio(const VirtioSlotState& slot);
VirtioSlotState decode_virtio(std::span<const uint8_t> data, const std::string& what);

}  // namespace wisp::snapshot
