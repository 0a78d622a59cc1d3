// The two hardware-reduced ACPI sleep registers (FADT SLEEP_CONTROL_REG and SLEEP_STATUS_REG),
// one I/O port each. This is how a guest with the DSDT from acpi_tables.cc powers the machine
// off: Linux's acpi_hw_extended_sleep() writes (SLP_TYP << 2) | SLP_EN to the control port,
// SLP_TYP being the first integer of the DSDT's \_S5_ package. Without it the guest can only
// halt, and the VMM has to guess from the console (see ConsoleWatch in vmm/machine/console.h).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "vmm/bus/io_bus.h"

namespace wisp {

class PmControl final : public BusDevice {
 public:
  // Insert at kBasePort with kRangeLength: control at offset 0, status at offset 1. 0x600 is
  // clear of every legacy PC port KVM or wisp emulates (and is what Cloud Hypervisor uses).
  static constexpr uint16_t kBasePort = 0x600;
  static constexpr uint16_t kSleepControlPort = kBasePort;
  static constexpr uint16_t kSleepStatusPort = kBasePort + 1;
  static constexpr uint64_t kRangeLength = 2;

  // Sleep control register bits, ACPI 6.5 section 4.8.3.7 (ACPICA's ACPI_X_SLEEP_*).
  static constexpr uint8_t kSleepTypeShift = 2;
  static constexpr uint8_t kSleepTypeMask = 0x1c;
  static constexpr uint8_t kSleepEnable = 0x20;
  // The SLP_TYP value the DSDT's \_S5_ package hands the guest for "soft off". Any 3-bit value
  // would do, as long as the table and this device agree; 5 reads as "S5" in a trace.
  static constexpr uint8_t kS5SleepType = 5;
  // What a guest writes to the control port to power off: 0x34.
  static constexpr uint8_t kPowerOffValue = (kS5SleepType << kSleepTypeShift) | kSleepEnable;

  // `on_poweroff` runs on the vCPU thread that wrote the register; it must only request a stop.
  explicit PmControl(std::function<void()> on_poweroff) : on_poweroff_(std::move(on_poweroff)) {}

  // Both registers read as 0. In particular WAK_STS (status bit 7) never sets, so a guest that
  // entered a sleep state we did not act on spins in its wait loop until the VMM stops it.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  // Only a control write with SLP_EN and SLP_TYP = S5 does anything. Other sleep types are not
  // offered by the DSDT; writes to the status register (Linux clears WAK_STS first) are ignored.
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  const std::function<void()> on_poweroff_;
};

}  // namespace wisp
