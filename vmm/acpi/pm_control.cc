#include "vmm/acpi/pm_control.h"

#include <algorithm>

namespace wisp {

void PmControl::read(uint64_t /*offset*/, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), uint8_t{0});
}

void PmControl::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != kSleepControlPort - kBasePort || data.empty()) return;
  // The FADT declares an 8-bit register, so Linux uses outb; a wider access from some other
  // guest still carries the register in its low byte.
  const uint8_t v = data[0];
  if (!(v & kSleepEnable)) return;
  if (((v & kSleepTypeMask) >> kSleepTypeShift) != kS5SleepType) return;
  on_poweroff_();
}

}  // namespace wisp
