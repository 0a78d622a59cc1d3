#include "vmm/vcpu/exit_handler.h"

#include "base/hex.h"

namespace wisp {

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kNone:
      return "none";
    case StopReason::kReset:
      return "reboot";
    case StopReason::kPowerOff:
      return "poweroff";
    case StopReason::kCrash:
      return "crash";
    case StopReason::kError:
      return "error";
    case StopReason::kSignal:
      return "signal";
  }
  return "?";
}

namespace {

ExitVerdict stop(StopReason reason, std::string detail = {}) {
  return ExitVerdict{false, reason, std::move(detail)};
}

void handle_io(const VcpuExit& exit, const IoBus& pio, ExitCounters& counters) {
  counters.io_exits.fetch_add(1, std::memory_order_relaxed);
  // A string instruction (rep ins/outs) arrives as `count` accesses of `size` bytes.
  for (uint32_t i = 0; i < exit.count; ++i) {
    auto chunk = exit.data.subspan(static_cast<size_t>(i) * exit.size, exit.size);
    bool owned = exit.is_write ? pio.write(exit.addr, chunk) : pio.read(exit.addr, chunk);
    if (!owned) counters.unhandled_io.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace

ExitVerdict handle_exit(const VcpuExit& exit, const IoBus& pio, const IoBus& mmio,
                        ExitCounters& counters) {
  using Kind = VcpuExit::Kind;
  switch (exit.kind) {
    case Kind::kIo:
      if (exit.size == 0 || exit.size > 4 ||
          exit.data.size() != static_cast<size_t>(exit.size) * exit.count)
        return stop(StopReason::kError, "malformed port I/O exit at port " + hex(exit.addr));
      handle_io(exit, pio, counters);
      return {};
    case Kind::kMmio: {
      counters.mmio_exits.fetch_add(1, std::memory_order_relaxed);
      if (exit.size == 0 || exit.size > 8 || exit.data.size() != exit.size)
        return stop(StopReason::kError, "malformed MMIO exit at " + hex(exit.addr));
      bool owned =
          exit.is_write ? mmio.write(exit.addr, exit.data) : mmio.read(exit.addr, exit.data);
      if (!owned) counters.unhandled_mmio.fetch_add(1, std::memory_order_relaxed);
      return {};
    }
    case Kind::kInterrupted:
      return {};
    case Kind::kHlt:
      // With the in-kernel LAPIC KVM handles HLT itself; seeing it means nothing will wake us.
      return stop(StopReason::kPowerOff, "guest halted");
    case Kind::kShutdown:
      return stop(StopReason::kReset, "triple fault");
    case Kind::kSystemEvent:
      if (exit.code == VcpuExit::kEventShutdown) return stop(StopReason::kPowerOff);
      if (exit.code == VcpuExit::kEventReset) return stop(StopReason::kReset);
      if (exit.code == VcpuExit::kEventCrash) return stop(StopReason::kCrash, "KVM crash event");
      return stop(StopReason::kError, "unknown KVM system event " + std::to_string(exit.code));
    case Kind::kInternalError:
      return stop(StopReason::kError, "KVM internal error, suberror " + std::to_string(exit.code));
    case Kind::kFailEntry:
      return stop(StopReason::kError,
                  "KVM failed to enter the guest, hardware reason " + hex(exit.code));
    case Kind::kUnknown:
      return stop(StopReason::kError, "unhandled KVM exit reason " + std::to_string(exit.code));
  }
  return stop(StopReason::kError, "impossible exit kind");
}

}  // namespace wisp
