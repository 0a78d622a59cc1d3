# The saved state of wisp's devices: the `data` of a DeviceState entry in state.capnp, one
# message per device, chosen by its `kind` ("serial" -> SerialState, "virtio-mmio" ->
# VirtioSlot). Only snapshot/device_codec.cc reads or writes it; it mirrors the plain State
# structs of vmm/devices/serial.h, vmm/virtio/mmio_transport.h and vmm/virtio/device_state.h.
#
# Everything here is untrusted when read back: the codec bounds list and byte sizes, and the
# devices validate the values on restore. Extending: add fields (never renumber or retype); a new
# virtio device is a new member of VirtioSlot.device.

@0xcf091eea3cb4217b;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("wisp::snapshot::device_schema");

# The 8250 UART (LSR, MSR and IIR are derived from these on restore).
struct SerialState {
  ier @0 :UInt8;
  lcr @1 :UInt8;
  mcr @2 :UInt8;
  scr @3 :UInt8;
  dll @4 :UInt8;
  dlm @5 :UInt8;
  fifoEnabled @6 :Bool;          # FCR bit 0
  thrEmptyPending @7 :Bool;      # THRE interrupt latched
  rx @8 :Data;                   # input not yet read by the guest, oldest first
}

# One split virtqueue: the driver's configuration and the device's ring positions.
struct QueueState {
  size @0 :UInt16;
  ready @1 :Bool;
  descTable @2 :UInt64;
  availRing @3 :UInt64;
  usedRing @4 :UInt64;
  nextAvail @5 :UInt16;
  nextUsed @6 :UInt16;
  eventIdx @7 :Bool;
}

# The virtio-mmio transport registers the driver wrote, plus its queues.
struct MmioTransportState {
  status @0 :UInt32;
  deviceFeaturesSel @1 :UInt32;
  driverFeaturesSel @2 :UInt32;
  driverFeatures @3 :UInt64;
  queueSel @4 :UInt32;
  interruptStatus @5 :UInt32;
  configGeneration @6 :UInt32;
  needsReset @7 :Bool;
  deviceActivated @8 :Bool;
  queues @9 :List(QueueState);
}

struct BlockState {
  capacitySectors @0 :UInt64;
  readOnly @1 :Bool;
  segMax @2 :UInt32;
}

struct VsockState {
  guestCid @0 :UInt64;
}

# One virtio-mmio slot: the transport and the device behind it.
struct VirtioSlot {
  transport @0 :MmioTransportState;
  device :union {
    block @1 :BlockState;
    rng @2 :Void;
    vsock @3 :VsockState;
  }
}
