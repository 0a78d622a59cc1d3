# The saved state of wisp's devices, as parts of a snapshot's machine (state.capnp Machine): the
# serial port and each virtio-mmio slot. Only snapshot/device_codec.cc reads or writes them. They
# are vmm/'s State types as they are: SerialState (vmm/devices/serial.h), MmioTransportState and
# QueueState (vmm/virtio/), and each virtio kind's Spec and State (vmm/virtio/<kind>/).
#
# Untrusted when read back: the codec bounds lists before decoding them, then each State's
# validate() checks the values. Extending: add fields (never renumber or retype). A new virtio
# kind is a new member of VirtioDevice's union, named after its kName in camelCase
# ("virtio-net" -> virtioNet), holding a `spec` and a `state` struct whose fields are the ones
# its Spec and State list in fields(), camelCased ("guest_cid" -> guestCid). The codec finds
# them by those names: it has no code per kind.

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

# One virtio-mmio slot: the transport, and the device behind it (its kind is the union member).
struct VirtioDevice {
  transport @0 :MmioTransportState;
  union {
    virtioBlk @1 :VirtioBlk;
    virtioRng @2 :VirtioRng;
    virtioVsock @3 :VirtioVsock;
    virtioNet @4 :VirtioNet;
  }
}

struct VirtioBlk {
  spec @0 :Spec;
  state @1 :State;

  struct Spec {
    path @0 :Text;               # the image (absolute), reopened on restore
    readOnly @1 :Bool;
    sizeBytes @2 :UInt64;        # the image as it was at the snapshot: a clone's page cache
    mtimeNs @3 :Int64;           # holds its blocks, so restore refuses a changed image
    digest @4 :UInt64;           # CRC-64 of its first and last 4 KiB (snapshot_trust.h)
    # The rate limit (base/token_bucket.h; all 0: none): bytes, then requests.
    bwSize @5 :UInt64;
    bwOneTimeBurst @6 :UInt64;
    bwRefillTimeMs @7 :UInt64;
    opsSize @8 :UInt64;
    opsOneTimeBurst @9 :UInt64;
    opsRefillTimeMs @10 :UInt64;
  }
  struct State {
    capacitySectors @0 :UInt64;
    readOnly @1 :Bool;
    segMax @2 :UInt32;
  }
}

struct VirtioRng {
  spec @0 :Spec;
  state @1 :State;

  struct Spec {}
  struct State {}
}

struct VirtioVsock {
  spec @0 :Spec;
  state @1 :State;

  struct Spec {
    guestCid @0 :UInt64;         # the socket path is the restoring VMM's, not the snapshot's
  }
  struct State {
    guestCid @0 :UInt64;
  }
}

struct VirtioNet {
  spec @0 :Spec;
  state @1 :State;

  struct Spec {
    tapName @0 :Text;            # reopened by name on restore (given before the jail)
    mac @1 :UInt64;              # the low 48 bits, first octet most significant
    # The rate limits (base/token_bucket.h; all 0: none): RX (frames to the guest) and TX
    # (frames from it), each bytes then frames.
    rxBwSize @2 :UInt64;
    rxBwOneTimeBurst @3 :UInt64;
    rxBwRefillTimeMs @4 :UInt64;
    rxOpsSize @5 :UInt64;
    rxOpsOneTimeBurst @6 :UInt64;
    rxOpsRefillTimeMs @7 :UInt64;
    txBwSize @8 :UInt64;
    txBwOneTimeBurst @9 :UInt64;
    txBwRefillTimeMs @10 :UInt64;
    txOpsSize @11 :UInt64;
    txOpsOneTimeBurst @12 :UInt64;
    txOpsRefillTimeMs @13 :UInt64;
  }
  struct State {
    mac @0 :UInt64;              # what the guest read at probe time
  }
}
