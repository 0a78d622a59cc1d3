// A microVM: guest memory, the KVM VM and its vCPUs, the legacy devices, and the event loop,
// wired explicitly by Machine::create (the builder) and driven by Machine::run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "vmm/kvm/kvm.h"
#include "vmm/machine/virtio_wiring.h"
#include "vmm/vcpu/exit_handler.h"

namespace wisp {

struct MachineConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: no initrd
  std::string cmdline;
  uint64_t mem_bytes = 128ull << 20;
  uint32_t vcpus = 1;
  enum class Console { kStdio, kNone, kFile } console = Console::kStdio;
  std::string console_file;  // for kFile
  VirtioConfig virtio;       // drives and rng
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
};

class Machine {
 public:
  // Builds the VM and loads the kernel, initrd, command line, zero page and MP table. Throws
  // Error with a message naming the file or option at fault. `t0_ns` is the CLOCK_MONOTONIC time
  // the caller counts from (process start) for RunResult's timestamps.
  static std::unique_ptr<Machine> create(const MachineConfig& config, const Kvm& kvm,
                                         uint64_t t0_ns);
  virtual ~Machine() = default;

  // Runs the guest until it powers off, reboots, panics or fails. Owns the calling thread (it
  // becomes the event loop) and the terminal while it runs.
  virtual RunResult run() = 0;
};

// The microVM command-line parameters wisp adds in front of the user's, chosen to keep boot
// fast and quiet on a machine with no PCI, no RTC and no keyboard (ACPI, where the kernel has
// it, describes only CPUs, interrupts, COM1 and power-off).
std::string default_kernel_cmdline();

}  // namespace wisp
