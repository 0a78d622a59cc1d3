// Where virtio-mmio devices live in the guest: 4 KiB windows in the 32-bit MMIO hole from
// 0xd0000000 up, one ISA interrupt each from IRQ 5 up (IRQ 4 is COM1's; the MP table routes ISA
// IRQ n to IOAPIC pin n, and KVM's default GSI routing sends GSI n there too). The guest finds
// them on its command line (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES), since there is no ACPI or DT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace wisp {

struct VirtioMmioSlot {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t irq = 0;  // ISA IRQ = GSI for the irqfd
};

constexpr uint64_t kVirtioMmioBase = 0xd000'0000;
constexpr uint64_t kVirtioMmioWindow = 0x1000;
constexpr uint32_t kVirtioMmioFirstIrq = 5;
constexpr uint32_t kVirtioMmioLastIrq = 15;  // the last ISA IRQ
constexpr size_t kMaxVirtioMmioDevices = kVirtioMmioLastIrq - kVirtioMmioFirstIrq + 1;

// The slot of the `index`-th device (0-based). Throws Error past kMaxVirtioMmioDevices.
VirtioMmioSlot virtio_mmio_slot(size_t index);

// The guest kernel parameter announcing one device: "virtio_mmio.device=4K@0xd0000000:5".
std::string virtio_mmio_cmdline(const VirtioMmioSlot& slot);

}  // namespace wisp
