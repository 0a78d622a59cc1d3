// The saved state of a whole microVM as plain data (DESIGN.md rule 1): what Machine::save_state
// collects from its components and what Machine::restore hands back to them. No fds, no host
// pointers; guest memory travels separately (the snapshot's memory file). snapshot/ encodes
// these types as they are, into its file format and back; vmm/ never sees that format.
//
// A MachineState read from disk is untrusted until validate() accepted it: each component's
// State checks its own limits in its own validate(), and this adds how they fit together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vmm/devices/serial.h"
#include "vmm/kvm/cpu_types.h"
#include "vmm/kvm/vcpu_state.h"
#include "vmm/virtio/device_kinds.h"
#include "vmm/virtio/mmio_transport.h"

namespace wisp {

// One virtio-mmio slot: the device the machine description names (so restore can build the
// same one), that device's own state, and the transport in front of it.
struct VirtioSlotState {
  DeviceSpec spec;
  MmioTransportState transport;
  VirtioDeviceState device;
  bool operator==(const VirtioSlotState&) const = default;

  // The three parts' validate(), and the state must be of the spec's kind. Throws Error.
  void validate() const;
};

struct MachineState {
  // Bounds an untrusted CPUID list (KVM itself takes far fewer entries).
  static constexpr size_t kMaxCpuidEntries = 512;

  uint64_t mem_bytes = 0;
  // The CPU model the guest was booted with (`--portable`: the x86-64-v2 baseline); a restore
  // shows its vCPUs the same model.
  CpuModel cpu_model = CpuModel::kHost;
  // The CPUID the boot vCPU was given. Restore gives each vCPU what this host computes for
  // `cpu_model` and refuses a snapshot whose CPUID differs (the guest kernel chose code paths
  // from it).
  CpuidEntries cpuid;
  VmState vm;
  std::vector<VcpuState> vcpus;  // vcpus[i] is vCPU i
  SerialState serial;
  std::vector<VirtioSlotState> virtio;  // virtio[i] is the device in slot i
  bool operator==(const MachineState&) const = default;

  // Throws Error("machine state: <part>: <what is wrong>"): memory size not whole pages, too
  // many CPUID entries, a vCPU count wisp cannot run (1..kMpTableMaxCpus) or ids out of
  // order, more devices than virtio-mmio slots, and whatever each part's validate() refuses.
  void validate() const;
};

}  // namespace wisp
