// A virtio-blk back-end of zeros in memory, for device tests that need a disk but not a file.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "vmm/virtio/block/block_backend.h"

namespace wisp::testing {

class MemoryDisk final : public BlockBackend {
 public:
  explicit MemoryDisk(uint64_t bytes = 1 << 20, bool ro = false) : size_(bytes), ro_(ro) {}
  uint64_t size_bytes() const override { return size_; }
  bool read_only() const override { return ro_; }
  int read_at(uint64_t, std::span<uint8_t> out) override {
    std::memset(out.data(), 0, out.size());
    return 0;
  }
  int write_at(uint64_t, std::span<const uint8_t>) override { return 0; }
  int flush() override { return 0; }
  std::string id() const override { return "mem"; }

 private:
  uint64_t size_;
  bool ro_;
};

}  // namespace wisp::testing
