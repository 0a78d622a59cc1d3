#include "vmm/machine/console_watch.h"

namespace wisp {

ConsoleWatch::Event ConsoleWatch::finish_line() {
  Event ev = Event::kNone;
  auto panic = line_.find("Kernel panic - not syncing");
  if (line_.find("---[ end Kernel panic") != std::string::npos) {
    ev = Event::kPanicEnd;
  } else if (panic != std::string::npos) {
    panic_line_ = line_.substr(panic);
    while (!panic_line_.empty() && (panic_line_.back() == '\r' || panic_line_.back() == ' '))
      panic_line_.pop_back();
    ev = Event::kPanic;
  } else if (line_.find("reboot: System halted") != std::string::npos ||
             line_.find("reboot: Power down") != std::string::npos) {
    ev = Event::kHalt;
  }
  line_.clear();
  return ev;
}

ConsoleWatch::Event ConsoleWatch::feed(std::span<const uint8_t> bytes) {
  Event first = Event::kNone;
  for (uint8_t b : bytes) {
    if (b == '\n') {
      Event ev = finish_line();
      if (first == Event::kNone) first = ev;
    } else if (line_.size() < kMaxLine) {
      line_.push_back(static_cast<char>(b));
    }
  }
  return first;
}

}  // namespace wisp
