// A microVM: guest memory, the KVM VM and its vCPUs, the legacy devices, and the event loop,
// wired explicitly by MachineBuilder (machine_builder.h) for Machine::create and
// Machine::restore, and driven by Machine::run.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "api/vmm_control.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu_stats.h"
#include "vmm/machine/console.h"
#include "vmm/machine/machine_state.h"
#include "vmm/machine/virtio_wiring.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/vcpu/exit_handler.h"

namespace wisp {

class Machine;

// Makes what answers the control socket's calls (api/vmm.capnp) for `machine`. Its methods
// run on the machine's event-loop thread, so they may pause, save and resume it.
using ControlServiceFactory = std::function<std::unique_ptr<control::Service>(Machine& machine)>;

// The threads a running machine has, each confined by a filter of its own (see
// MachineConfig::on_thread_start).
enum class ThreadRole {
  kLoop,     // the thread that calls run(): the event loop
  kVcpu,     // one per vCPU
  kControl,  // the control socket's RPC thread
  kBlock,    // a device's own thread (VirtioDevice::start_threads): virtio-blk's disk I/O
};

struct MachineConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: no initrd
  // Open kernel and initrd files (not owned; -1: open the paths above, then only names).
  int kernel_fd = -1;
  int initrd_fd = -1;
  std::string cmdline;
  uint64_t mem_bytes = 128ull << 20;
  uint32_t vcpus = 1;
  // A booted VM's RAM on 2 MiB transparent huge pages (GuestMemory::create); false:
  // --no-hugepages. A restored VM maps its snapshot's memory file whatever this says.
  bool huge_pages = true;
  // The CPU the vCPUs are shown (`--portable`: the x86-64-v2 baseline). A restored VM gets
  // its snapshot's model whatever this says.
  CpuModel cpu_model = CpuModel::kHost;
  using Console = ConsoleOutput;  // kStdio, kNone or kFile
  Console console = Console::kStdio;
  std::string console_file;                                  // for kFile
  uint64_t console_max_bytes = kDefaultConsoleFileMaxBytes;  // for kFile: its cap
  // The virtio devices, in slot order (the first virtio-blk is /dev/vda).
  std::vector<DeviceSpec> devices;
  // A Unix socket path to serve the control channel on ("" = none), and who answers it.
  std::string control_socket;
  ControlServiceFactory control_service;
  // Runs first thing on each thread of run(): on each vCPU thread and the control thread as
  // they start, then on the calling thread before it runs the event loop; no guest input is
  // handled before it returns (the jail installs each thread's seccomp filter here). A throw
  // stops the machine with that error. Empty: nothing.
  std::function<void(ThreadRole)> on_thread_start;
};

struct RunResult {
  StopReason reason = StopReason::kNone;
  bool panicked = false;  // the guest kernel panicked (reason is then kCrash)
  std::string detail;     // panic line or error text
  int signal = 0;         // for kSignal: which one
  // Microseconds since the process's start reference (see Machine::create's `t0_ns`).
  uint64_t kernel_loaded_us = 0;  // kernel, initrd and tables are in guest memory
  uint64_t first_run_us = 0;
  uint64_t exit_us = 0;
  uint64_t io_exits = 0, mmio_exits = 0, unhandled_io = 0;
  // The event loop's longest iteration (EventLoop::longest_iteration_ns), in microseconds.
  uint64_t loop_max_us = 0;
};

// What Machine::pre_fault did.
struct PreFaultResult {
  uint64_t pages = 0;  // 4 KiB pages mapped
  double ms = 0;
  std::string error;  // why it stopped early ("" it did not): the rest loads on first touch
};

// Makes `vm`'s x86 platform, the part of every machine that needs nothing of its config:
// the TSS and identity-map pages, the in-kernel irqchip and the PIT (whose creation starts a
// kernel thread). A standby VMM makes it while it waits for its order, with its VM and vCPU 0
// (Vm::create_vcpu0_ahead; together 3-5 ms less on the order's path in the nested testbed);
// Machine::create and restore make it when `vm` does not have it yet and take a vCPU 0 made
// ahead. Throws Error naming the ioctl KVM refused.
void prepare_platform(Vm& vm);

class Machine {
 public:
  // Builds the VM and loads the kernel, initrd, command line, zero page and MP table. Throws
  // Error with a message naming the file or option at fault. `t0_ns` is the CLOCK_MONOTONIC time
  // the caller counts from (process start) for RunResult's timestamps. `vm`: one made ahead
  // with kvm.create_vm() (none: made here); a standby VMM makes its VM while it waits for its
  // order, so the order's path skips KVM_CREATE_VM (12-15 ms in the nested testbed).
  static std::unique_ptr<Machine> create(const MachineConfig& config, const Kvm& kvm,
                                         uint64_t t0_ns, std::optional<Vm> vm = std::nullopt);
  // Rebuilds a machine from saved state over `memory` (a snapshot's memory file, mapped
  // privately). `config` supplies what is not guest state: console, control socket, the new
  // vsock Unix socket; its kernel, initrd and command line are unused, and its memory size and
  // devices must match `state` (the caller builds them from it). `state` must have passed
  // MachineState::validate() (reading a snapshot file does it, once); what KVM or a device
  // still refuses throws Error naming it. The vCPUs start running where they were paused when
  // run() is called. `vm` as for create.
  static std::unique_ptr<Machine> restore(const MachineConfig& config, const MachineState& state,
                                          GuestMemory memory, const Kvm& kvm, uint64_t t0_ns,
                                          std::optional<Vm> vm = std::nullopt);
  virtual ~Machine() = default;

  // Runs the guest until it powers off, reboots, panics or fails. Owns the calling thread (it
  // becomes the event loop) and the terminal while it runs.
  virtual RunResult run() = 0;

  // For the control handler (event-loop thread, during run()). pause() returns once every
  // vCPU is out of KVM_RUN with its pending I/O completed; nothing touches guest memory until
  // resume() except the caller. save_state() needs the machine paused. `hold_clock`: the
  // guest's clock stands still until resume() (api/vmm.capnp pause).
  virtual void pause(bool hold_clock) = 0;
  virtual void resume() = 0;
  virtual bool paused() const = 0;
  virtual MachineState save_state() = 0;
  virtual const GuestMemory& memory() const = 0;
  // KVM's counters of every vCPU, summed (vmm/kvm/vcpu_stats.h); the event-loop thread (the
  // control handler), as pause() and the rest.
  virtual VcpuCounts vcpu_counts() const = 0;
  // Maps the given guest-physical pages (runs of 4 KiB pages: first page number, count) in
  // KVM's EPT/NPT before the vCPUs first run, so the guest's first touch of each costs no exit:
  // in a nested hypervisor an exit is tens of microseconds, the map from here a few. Only
  // before run(), and only where Kvm::has_pre_fault_memory(). Best effort: a failure leaves the
  // rest of the pages to the guest's faults (the result says so).
  virtual PreFaultResult pre_fault(std::span<const std::pair<uint64_t, uint64_t>> guest_pages) = 0;
};

// The CPUID wisp gives vCPU `id` of a machine with `vcpus` vCPUs of CPU model `model` on this
// host. A restore compares it with the snapshot's: the guest kernel chose its code paths from it.
CpuidEntries guest_cpuid(const Kvm& kvm, uint32_t id, uint32_t vcpus, CpuModel model);

// The microVM command-line parameters wisp adds in front of the user's, chosen to keep boot
// fast and quiet on a machine with no PCI, no RTC and no keyboard (ACPI, where the kernel has
// it, describes only CPUs, interrupts, COM1 and power-off).
std::string default_kernel_cmdline();

}  // namespace wisp
