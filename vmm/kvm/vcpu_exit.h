// A decoded KVM exit: the part of kvm_run the VMM acts on, as plain data. The exit handler
// (vmm/vcpu/exit_handler.h) is a function of this type alone, so it is testable without KVM.
#pragma once

#include <cstdint>
#include <span>

namespace wisp {

struct VcpuExit {
  enum class Kind {
    kIo,             // port I/O: `addr` is the port, `size` 1/2/4, `count` repetitions
    kMmio,           // MMIO: `addr` guest-physical, `size` ≤ 8
    kHlt,            // only without an in-kernel LAPIC
    kShutdown,       // triple fault: the guest reset itself (reboot=t, or a crash)
    kSystemEvent,    // `code` = KVM_SYSTEM_EVENT_* (shutdown/reset/crash)
    kInternalError,  // `code` = suberror
    kFailEntry,      // `code` = hardware entry failure reason
    kInterrupted,    // KVM_RUN returned EINTR / immediate_exit: someone kicked us
    kUnknown,        // `code` = raw exit reason
  };
  Kind kind = Kind::kUnknown;
  bool is_write = false;
  uint64_t addr = 0;
  uint32_t size = 0;
  uint32_t count = 1;
  uint64_t code = 0;
  // kSystemEvent codes (mirror KVM_SYSTEM_EVENT_*; kvm.cc asserts they match).
  static constexpr uint64_t kEventShutdown = 1, kEventReset = 2, kEventCrash = 3;
  // For kIo: count*size bytes inside kvm_run; for kMmio: `size` bytes. An IN/read fills it.
  std::span<uint8_t> data;
};

}  // namespace wisp
