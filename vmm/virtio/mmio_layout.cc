#include "vmm/virtio/mmio_layout.h"

#include <cinttypes>
#include <cstdio>

#include "base/error.h"
#include "vmm/arch/layout.h"
#include "vmm/memory/guest_memory.h"

namespace wisp {

static_assert(kVirtioMmioBase >= GuestMemory::kMmioHoleStart);
static_assert(kVirtioMmioBase + kMaxVirtioMmioDevices * kVirtioMmioWindow <= layout::kIoapicAddr,
              "virtio-mmio windows must stay below the IOAPIC");

VirtioMmioSlot virtio_mmio_slot(size_t index) {
  if (index >= kMaxVirtioMmioDevices)
    throw Error("too many virtio devices: at most " + std::to_string(kMaxVirtioMmioDevices) +
                " fit the free ISA IRQs " + std::to_string(kVirtioMmioFirstIrq) + ".." +
                std::to_string(kVirtioMmioLastIrq));
  return {kVirtioMmioBase + index * kVirtioMmioWindow, kVirtioMmioWindow,
          kVirtioMmioFirstIrq + static_cast<uint32_t>(index)};
}

std::string virtio_mmio_cmdline(const VirtioMmioSlot& slot) {
  char buf[96];
  // Linux parses the size with memparse(), so "4K" works; sizes here are whole KiB.
  snprintf(buf, sizeof(buf), "virtio_mmio.device=%" PRIu64 "K@0x%" PRIx64 ":%u", slot.size >> 10,
           slot.base, slot.irq);
  return buf;
}

}  // namespace wisp
