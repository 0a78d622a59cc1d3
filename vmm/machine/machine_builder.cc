#include "vmm/machine/machine_builder.h"

#include <unistd.h>

#include <string>

#include "base/clock.h"
#include "base/error.h"
#include "vmm/acpi/acpi_tables.h"
#include "vmm/acpi/pm_control.h"
#include "vmm/acpi/vm_generation_id.h"
#include "vmm/arch/layout.h"
#include "vmm/arch/msrs.h"
#include "vmm/boot/long_mode.h"
#include "vmm/devices/i8042.h"

namespace wisp {

MachineBuilder::MachineBuilder(const MachineConfig& config, const Kvm& kvm, uint64_t t0_ns,
                               GuestMemory memory, Vm vm)
    : kvm_(kvm),
      machine_(std::make_unique<MachineImpl>(config, t0_ns, std::move(memory), std::move(vm))) {}

// ---- The device set: how virtio devices are created, restored and attached ------------------
// (save_state's part is MachineImpl::save_devices.)

VirtioDevices MachineBuilder::create_devices() const {
  return create_virtio_devices(machine_->config_.devices);
}

VirtioDevices MachineBuilder::restore_devices(const MachineState& state) const {
  VirtioDevices devices = create_virtio_devices(machine_->config_.devices);
  // Device state first: a device must know its saved identity (capacity, vsock CID) before
  // the transport re-activates it.
  if (devices.size() != state.virtio.size())
    throw Error("snapshot has " + std::to_string(state.virtio.size()) +
                " virtio devices, the restored machine " + std::to_string(devices.size()));
  for (size_t i = 0; i < devices.size(); ++i) devices[i]->restore_state(state.virtio[i].device);
  return devices;
}

// Each device on its transport: MMIO slot, irqfd, queue ioeventfds, event-loop handlers.
void MachineBuilder::attach_devices(const VirtioDevices& devices) {
  MachineImpl& m = *machine_;
  m.virtio_ = attach_virtio_devices(m.vm_, m.mmio_, m.loop_, m.mem_, devices);
}

// After the VM's and the vCPUs' state: a transport may raise its interrupt.
void MachineBuilder::restore_transports(const MachineState& state) {
  MachineImpl& m = *machine_;
  for (size_t i = 0; i < m.virtio_.size(); ++i)
    m.virtio_[i].transport->restore(state.virtio[i].transport);
}

// ---- The steps --------------------------------------------------------------------------------

void prepare_platform(Vm& vm) {
  vm.set_identity_map_address(layout::kKvmIdentityMapAddr);
  vm.set_tss_address(layout::kKvmTssAddr);
  vm.create_irqchip();
  vm.create_pit();
}

void MachineBuilder::build_common(const VirtioDevices& devices) {
  MachineImpl& m = *machine_;
  if (!m.vm_.has_irqchip()) prepare_platform(m.vm_);
  uint32_t slot = 0;
  for (const auto& r : m.mem_.regions())
    m.vm_.set_memory_region(slot++, r.guest_base.value(), r.size, r.host);
  attach_devices(devices);
  add_console_and_legacy_devices();
}

void MachineBuilder::add_console_and_legacy_devices() {
  MachineImpl& m = *machine_;
  m.console_ =
      std::make_unique<Console>(ConsoleConfig{.output = m.config_.console,
                                              .file = m.config_.console_file,
                                              .file_max_bytes = m.config_.console_max_bytes},
                                m.stop_);
  Console* console = m.console_.get();
  m.serial_ = std::make_shared<Serial>(
      m.serial_irq_, [console](std::span<const uint8_t> b) { console->output(b); });
  m.vm_.register_irqfd(m.serial_irq_.fd(), Serial::kCom1Irq);
  m.pio_.insert(Serial::kCom1Base, Serial::kPortCount, m.serial_);
  StopRequest* stop = &m.stop_;
  m.pio_.insert(PmControl::kBasePort, PmControl::kRangeLength, std::make_shared<PmControl>([stop] {
                  stop->request(StopReason::kPowerOff, "ACPI S5 (power off)");
                }));
  m.pio_.insert(I8042::kDataPort, I8042::kRangeLength, std::make_shared<I8042>([stop] {
                  stop->request(StopReason::kReset, "i8042 reset");
                }));
  m.vm_.register_irqfd(m.vm_generation_irq_.fd(), kVmGenerationIdGsi);
  m.vm_generation_id_ = std::make_unique<VmGenerationId>(
      m.mem_, GuestAddress(layout::kVmGenerationIdAddr), m.vm_generation_irq_);
}

void MachineBuilder::boot(BootSetup setup) {
  MachineImpl& m = *machine_;
  // Devices go first so they stay ahead of a user's "--" (arguments for init).
  if (std::string v = virtio_kernel_cmdline(m.virtio_); !v.empty())
    setup.cmdline = v + " " + setup.cmdline;
  // Two descriptions of the CPUs and interrupt wiring: the loader's MP table for kernels
  // without ACPI (wisp's own), ACPI for distribution kernels (which may lack MP table support)
  // and for power-off.
  setup.acpi_rsdp_addr = layout::kAcpiTablesAddr;
  LoadedKernel kernel = load_boot_image(m.mem_, setup);
  write_acpi_tables(m.mem_, setup.vcpus);
  m.vm_generation_id_->write_first();
  m.kernel_loaded_ns_ = now_ns();

  LongModeEntry entry = setup_long_mode(m.mem_, kernel.image.entry, kernel.boot_params_addr);
  for (uint32_t id = 0; id < setup.vcpus; ++id) {
    Vcpu vcpu = create_vcpu(id);
    vcpu.set_msrs(boot_msrs());
    vcpu.init_fpu();
    vcpu.init_lapic_lints();
    // Application processors wait in KVM for INIT/SIPI from the boot CPU; only it needs
    // registers.
    if (id == 0) vcpu.set_long_mode_entry(entry);
    m.add_vcpu(std::move(vcpu));
  }
}

void MachineBuilder::restore(const MachineState& state) {
  MachineImpl& m = *machine_;
  const uint32_t count = m.config_.vcpus;
  if (state.vcpus.size() != count)
    throw Error("snapshot has " + std::to_string(state.vcpus.size()) + " vCPUs, expected " +
                std::to_string(count));
  // Order after Firecracker: the VM's irqchip, PIT and clock, then each vCPU (CPUID before
  // its registers, so KVM accepts the saved XSAVE and MSRs), then the devices.
  m.vm_.restore_state(state.vm);
  for (uint32_t id = 0; id < count; ++id) {
    Vcpu vcpu = create_vcpu(id);
    vcpu.restore_state(state.vcpus[id]);
    m.add_vcpu(std::move(vcpu));
  }
  m.serial_->restore(state.serial);
  restore_transports(state);
  // Every restore is a new generation: the guest's kernel reseeds its CRNG on the notify.
  m.vm_generation_id_->change();
  m.kernel_loaded_ns_ = now_ns();
}

Vcpu MachineBuilder::create_vcpu(uint32_t id) {
  MachineImpl& m = *machine_;
  std::unique_ptr<Vcpu> ahead = id == 0 ? m.vm_.take_vcpu0_ahead() : nullptr;
  Vcpu vcpu = ahead ? std::move(*ahead) : m.vm_.create_vcpu(id, kvm_.vcpu_mmap_size());
  CpuidEntries cpuid = guest_cpuid(kvm_, id, m.config_.vcpus, m.config_.cpu_model);
  vcpu.set_cpuid(cpuid);
  if (id == 0) m.boot_cpuid_ = cpuid;
  return vcpu;
}

std::unique_ptr<Machine> MachineBuilder::finish() {
  add_control_socket();
  return std::move(machine_);
}

// ---- The control socket -----------------------------------------------------------------------

void MachineBuilder::add_control_socket() {
  MachineImpl& m = *machine_;
  if (m.config_.control_socket.empty()) return;
  if (!m.config_.control_service)
    throw Error("--control-socket " + m.config_.control_socket + ": this VMM answers no calls");
  m.control_service_ = m.config_.control_service(m);
  // getuid(): still the uid that started the VM, as the jail drops privileges after the build.
  m.control_ = std::make_unique<ControlServer>(m.config_.control_socket, m.loop_,
                                               *m.control_service_, ::getuid());
}

}  // namespace wisp
