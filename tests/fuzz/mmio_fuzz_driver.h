// What the virtio-mmio fuzz targets share (virtio_device_fuzz, virtio_net_fuzz): the 8-byte
// operation their inputs are made of, a register write, a null interrupt line, and the split of
// an input into [op count byte][ops][guest RAM contents].
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "vmm/devices/irq_line.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/mmio_transport.h"

namespace wisp::fuzz {

struct NullIrq : IrqLine {
  void trigger() override {}
};

// One step of a fuzzed driver; what the fields mean is the target's choice.
struct Op {
  uint8_t kind;
  uint8_t arg;
  uint16_t arg2;
  uint32_t value;
};
static_assert(sizeof(Op) == 8);

inline void reg_write(MmioTransport& t, uint64_t off, uint32_t v) {
  t.write(off, {reinterpret_cast<const uint8_t*>(&v), 4});
}

// Takes the op count byte and at most that many whole ops from the front of the input
// (advancing it), then writes what is left into the first `ram_bytes` of guest RAM (zeroing
// the rest), so each input sees its own RAM.
inline std::vector<Op> take_ops_and_fill_ram(const uint8_t*& data, size_t& size, GuestMemory& mem,
                                             uint64_t ram_bytes) {
  size_t nops = size ? data[0] : 0;
  if (size) {
    data += 1;
    size -= 1;
  }
  nops = std::min(nops, size / sizeof(Op));
  std::vector<Op> ops(nops);
  if (nops) std::memcpy(ops.data(), data, nops * sizeof(Op));
  data += nops * sizeof(Op);
  size -= nops * sizeof(Op);
  auto ram = mem.slice(GuestAddress(0), ram_bytes);
  std::memset(ram.data(), 0, ram.size());
  std::memcpy(ram.data(), data, std::min<size_t>(size, ram_bytes));
  return ops;
}

}  // namespace wisp::fuzz
