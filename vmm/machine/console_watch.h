// Reads the guest console as it goes by and recognises the kernel's last words: a panic, or a
// halt/power-off. A kernel with ACPI powers off through the S5 sleep register (PmControl), an
// explicit exit; a kernel without ACPI (wisp's own guest) cannot: it prints "reboot: System
// halted" and halts every CPU inside KVM, where the VMM never sees an exit. For those the
// console line is the one signal there is, so the VMM acts on it. A panic is recognised the
// same way. TODO(pvpanic): an explicit panic device would not depend on the console.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace wisp {

class ConsoleWatch {
 public:
  enum class Event {
    kNone,
    kPanic,     // "Kernel panic - not syncing: ..." (the backtrace follows)
    kPanicEnd,  // "---[ end Kernel panic ...": the kernel has said all it will say
    kHalt,      // "reboot: System halted" / "reboot: Power down"
  };

  // Feeds console bytes; returns the first event a completed line triggers (kNone otherwise).
  Event feed(std::span<const uint8_t> bytes);

  // The panic line, once kPanic has been seen ("Kernel panic - not syncing: ...").
  const std::string& panic_line() const { return panic_line_; }

 private:
  Event finish_line();
  static constexpr size_t kMaxLine = 512;
  std::string line_;
  std::string panic_line_;
};

}  // namespace wisp
