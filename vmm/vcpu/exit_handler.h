// What a vCPU does with one exit: a plain function from a decoded exit to bus dispatch and a
// verdict. No KVM, no threads: unit tests drive it with hand-made exits.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "vmm/bus/io_bus.h"
#include "vmm/kvm/vcpu_exit.h"

namespace wisp {

// Why a VM stopped, as seen by one vCPU.
enum class StopReason {
  kNone,
  kReset,     // guest reboot: triple fault, KVM reset event, or i8042 reset
  kPowerOff,  // guest power-off request
  kCrash,     // KVM reported a guest crash
  kError,     // the VMM could not continue (internal error, failed entry, unknown exit)
  kSignal,    // the host asked the VMM to stop (SIGINT/SIGTERM/SIGHUP)
};
const char* stop_reason_name(StopReason r);

struct ExitVerdict {
  bool keep_running = true;
  StopReason reason = StopReason::kNone;
  std::string detail;  // for kError: what happened, for a person to read
};

// Counters a vCPU keeps about guest behaviour that the VMM contained rather than obeyed.
struct ExitCounters {
  std::atomic<uint64_t> io_exits{0};
  std::atomic<uint64_t> mmio_exits{0};
  std::atomic<uint64_t> unhandled_io{0};
  std::atomic<uint64_t> unhandled_mmio{0};
};

ExitVerdict handle_exit(const VcpuExit& exit, const IoBus& pio, const IoBus& mmio,
                        ExitCounters& counters);

}  // namespace wisp
