// The saved state of a whole microVM as plain data (DESIGN.md rule 1): what Machine::save_state
// collects from its components and what Machine::restore hands back to them. No fds, no host
// pointers; guest memory travels separately (the snapshot's memory file). snapshot/ turns this
// into its file format and back; vmm/ never sees that format.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/devices/serial.h"
#include "vmm/kvm/cpu_types.h"
#include "vmm/kvm/vcpu_state.h"
#include "vmm/virtio/block/block_backend.h"
#include "vmm/virtio/device_state.h"
#include "vmm/virtio/mmio_transport.h"

namespace wisp {

// What devices the machine has, so restore can rebuild the same set in the same MMIO slots:
// one virtio-blk per drive (in order), then rng if on, then vsock if on.
struct MachineDevices {
  std::vector<DriveSpec> drives;
  bool rng = false;
  bool vsock = false;
  uint64_t vsock_cid = 0;  // the guest's CID (its kernel keeps it across a restore)
};

// One virtio-mmio slot: the transport's registers and queues, and its device's own state.
struct VirtioSlotState {
  MmioTransportState transport;
  VirtioDeviceState device;
};

struct MachineState {
  uint64_t mem_bytes = 0;
  MachineDevices devices;
  // The CPUID the boot vCPU was given. Restore gives each vCPU what this host computes and
  // refuses a snapshot whose CPUID differs (the guest kernel chose code paths from it).
  CpuidEntries cpuid;
  VmState vm;
  std::vector<VcpuState> vcpus;
  SerialState serial;
  std::vector<VirtioSlotState> virtio;  // slot order = MachineDevices order
};

}  // namespace wisp
