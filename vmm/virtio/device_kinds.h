// The table of virtio device kinds: every kind wisp can put on a machine, in one list. Everything
// per kind goes through it: building a device from its spec (the machine builder), the name, the
// saved state's type (VirtioDevice::save_state), the snapshot codec (snapshot/device_codec.cc,
// which encodes a kind's Spec and State by their fields() into the kind's schema struct), and a
// snapshot's host-resource identity checks. A new kind is its folder (device, back-end, and a
// *_state.h with its Spec, State and kind type; kind_list.h says what those hold), one entry
// here, and its struct in snapshot/devices.capnp.
//
// A machine's devices are one ordered std::vector<DeviceSpec>: device i sits in virtio-mmio slot
// i (vmm/virtio/mmio_layout.h).
#pragma once

#include <memory>

#include "base/error.h"
#include "vmm/virtio/block/block_state.h"
#include "vmm/virtio/kind_list.h"
#include "vmm/virtio/net/net_state.h"
#include "vmm/virtio/rng/rng_state.h"
#include "vmm/virtio/vsock/vsock_state.h"

namespace wisp {

using VirtioKinds = KindList<BlockKind, RngKind, VsockKind, NetKind>;

// One device of a machine description: its kind (the alternative) and that kind's Spec.
using DeviceSpec = VirtioKinds::Spec;
// One device's saved state (VirtioDevice::save_state): its kind and that kind's State.
using VirtioDeviceState = VirtioKinds::State;

// The kind's kName: "virtio-blk", ...
const char* kind_name(const DeviceSpec& spec);
const char* kind_name(const VirtioDeviceState& state);

// The kind's Spec::validate / State::validate.
void validate(const DeviceSpec& spec);
void validate(const VirtioDeviceState& state);

// Builds the device (and opens its back-end) through its kind's create(). Throws Error naming
// what cannot be used (a drive, a socket path).
std::shared_ptr<VirtioDevice> create_virtio_device(const DeviceSpec& spec);

// For snapshots: `spec` with the identity of the host resource behind it (a drive's absolute
// path, size and modification time), and the restore-time check that the resource has not
// changed since (throws Error naming it). Kinds without such a resource pass through.
DeviceSpec record_identity(const DeviceSpec& spec);
void check_identity(const DeviceSpec& spec);

// The alternative `device` expects; throws Error when the saved state is another kind's.
template <typename State>
const State& expect_device_state(const VirtioDeviceState& s, const char* device) {
  if (const State* state = std::get_if<State>(&s)) return *state;
  throw Error(std::string(device) + ": saved state is a " + kind_name(s) + "'s");
}

}  // namespace wisp
