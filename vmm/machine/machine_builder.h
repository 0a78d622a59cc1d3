// Assembles a MachineImpl, for a fresh boot or for a restore from saved state, one step each:
//
//   build_common(devices)  the VM, its irqchip and PIT, memory slots, the virtio devices, the
//                          console and the legacy devices: what every machine has
//   boot(setup)            kernel, initrd, command line, firmware tables, the first VM
//                          generation id, vCPUs at the entry
//   restore(state)         VM state, vCPUs, serial port, virtio transports, a new VM
//                          generation id announced to the guest
//   finish()               the control socket; hands the machine over
//
// Machine::create and Machine::restore (machine.cc) are its callers. Every step throws Error
// naming the file, option or state field at fault; a builder that threw is discarded.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "vmm/boot/kernel_loader.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine/machine.h"
#include "vmm/machine/machine_impl.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/device.h"

namespace wisp {

using VirtioDevices = std::vector<std::shared_ptr<VirtioDevice>>;

class MachineBuilder {
 public:
  // `config` describes the machine as built (for a restore: with the snapshot's vCPU count and
  // memory size); `vm` is a fresh VM of `kvm` (Kvm::create_vm), nothing set on it yet.
  MachineBuilder(const MachineConfig& config, const Kvm& kvm, uint64_t t0_ns, GuestMemory memory,
                 Vm vm);

  // The device set, for build_common: fresh devices for a boot; for a restore, devices that
  // already carry their saved identity (capacity, vsock CID).
  VirtioDevices create_devices() const;
  VirtioDevices restore_devices(const MachineState& state) const;

  void build_common(const VirtioDevices& devices);
  // The kernel command line gets the virtio devices' parameters in front of setup.cmdline.
  void boot(BootSetup setup);
  void restore(const MachineState& state);
  std::unique_ptr<Machine> finish();

 private:
  void attach_devices(const VirtioDevices& devices);
  void add_console_and_legacy_devices();
  // A vCPU with the CPUID wisp gives it (vCPU 0's is kept for the snapshot).
  Vcpu create_vcpu(uint32_t id);
  void restore_transports(const MachineState& state);
  void add_control_socket();

  const Kvm& kvm_;
  std::unique_ptr<MachineImpl> machine_;
};

}  // namespace wisp
