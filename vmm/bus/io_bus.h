// An address space of registered, non-overlapping ranges (the PIO space or the MMIO space),
// dispatching each guest access to the device that owns it, kvmtool-style. Devices are inserted
// while the VM is built; afterwards the bus is only read, so dispatch from several vCPU threads
// needs no lock here (each device guards its own state).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

namespace wisp {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `offset` is relative to the start of the range the device was inserted at.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class IoBus {
 public:
  explicit IoBus(std::string name) : name_(std::move(name)) {}

  // Throws Error if [base, base+len) is empty, wraps, or overlaps a registered range.
  void insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> device);

  // Returns false when no device owns `addr` (reads then see all-ones, like an empty ISA bus).
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

  const std::string& name() const { return name_; }

 private:
  struct Range {
    uint64_t len;
    std::shared_ptr<BusDevice> device;
  };
  // Finds the range containing the whole access [addr, addr+size).
  const std::pair<const uint64_t, Range>* find(uint64_t addr, uint64_t size) const;

  std::string name_;
  std::map<uint64_t, Range> ranges_;  // keyed by base
};

}  // namespace wisp
