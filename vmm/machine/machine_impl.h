// The running microVM behind the Machine interface: the parts MachineBuilder assembled, driven by
// run() on the calling thread, which becomes the event loop. Internal to vmm/machine/.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "vmm/acpi/vm_generation_id.h"
#include "vmm/bus/io_bus.h"
#include "vmm/control/control_server.h"
#include "vmm/devices/irq_line.h"
#include "vmm/devices/serial.h"
#include "vmm/event/event_loop.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine/console.h"
#include "vmm/machine/machine.h"
#include "vmm/machine/stop_request.h"
#include "vmm/machine/virtio_wiring.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/vcpu/vcpu_runner.h"

namespace wisp {

// Thread rules: run() owns the calling thread; pause(), resume(), paused() and save_state() run
// on that thread while run() does (the control handler calls them), never elsewhere. Devices,
// the console and the stop request follow their own rules (see their headers); vCPU threads
// reach the machine only through the buses and stop_.
class MachineImpl final : public Machine {
 public:
  // Takes the memory and the VM; everything else is MachineBuilder's to add.
  MachineImpl(const MachineConfig& config, uint64_t t0_ns, GuestMemory memory, Vm vm);

  RunResult run() override;
  void pause(bool hold_clock) override;
  void resume() override;
  bool paused() const override { return vcpus_.paused(); }
  MachineState save_state() override;
  const GuestMemory& memory() const override { return mem_; }
  VcpuCounts vcpu_counts() const override;
  PreFaultResult pre_fault(std::span<const std::pair<uint64_t, uint64_t>> guest_pages) override;

 private:
  friend class MachineBuilder;

  // The device part of save_state(); its restore counterparts are MachineBuilder's.
  void save_devices(MachineState& s) const;
  RunResult result(uint64_t end_ns) const;
  // Adds a vCPU, with its KVM statistics file opened now (an ioctl: the builder runs before
  // any seccomp filter; its layout is read later); a kernel without one leaves the counters
  // unavailable.
  void add_vcpu(Vcpu vcpu);
  void start_threads();

  // Declared in dependency order, so destruction runs from the control socket and the vCPU
  // threads (joined) down to the devices they reach, the VM and guest memory.
  const MachineConfig config_;
  const uint64_t t0_ns_;
  GuestMemory mem_;
  Vm vm_;
  IoBus pio_{"port I/O"};
  IoBus mmio_{"MMIO"};
  EventLoop loop_;
  StopRequest stop_;  // stops the event loop and the vCPU loops
  EventFdIrq serial_irq_;
  std::unique_ptr<Console> console_;
  std::shared_ptr<Serial> serial_;
  EventFdIrq vm_generation_irq_;  // the GED's interrupt (acpi/vm_generation_id.h)
  std::unique_ptr<VmGenerationId> vm_generation_id_;
  std::vector<AttachedVirtioDevice> virtio_;
  CpuidEntries boot_cpuid_;  // vCPU 0's, saved with the state
  uint64_t kernel_loaded_ns_ = 0;
  VcpuRunner vcpus_;
  std::optional<uint64_t> held_clock_ns_;  // the guest's clock at a pause that holds it
  std::vector<VcpuStats> vcpu_stats_;
  std::unique_ptr<control::Service> control_service_;
  std::unique_ptr<ControlServer> control_;  // serves control_service_
};

}  // namespace wisp
