// Just enough of the i8042 keyboard controller for a guest to find it, pass its self-test and
// reset the machine through it (command 0xFE, what Linux's reboot=k does). No keyboard.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

#include "vmm/bus/io_bus.h"

namespace wisp {

class I8042 final : public BusDevice {
 public:
  static constexpr uint64_t kDataPort = 0x60;
  static constexpr uint64_t kCommandPort = 0x64;
  // Insert at kDataPort with length 5 so that 0x60..0x64 reach this device; 0x61 (system control
  // port B, PIT speaker gate) is in that range and reads as "timer 2 output high", which some
  // kernels poll while calibrating.
  static constexpr uint64_t kRangeLength = 5;

  explicit I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::mutex mu_;
  std::function<void()> on_reset_;
  std::deque<uint8_t> out_;  // bytes for the guest to read from the data port
  uint8_t control_ = 0x30;   // controller configuration byte: both ports' clocks disabled
  uint8_t pending_cmd_ = 0;  // a command whose parameter byte comes through the data port
  uint8_t port_b_ = 0;
};

}  // namespace wisp
