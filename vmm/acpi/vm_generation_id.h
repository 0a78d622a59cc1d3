// The VM generation id (Microsoft's "Virtual Machine Generation ID" device, as QEMU and
// Firecracker offer it): 16 bytes in reserved guest memory that change whenever the VM is
// restored from a snapshot, described by an ACPI device and announced by an ACPI Notify. A
// Linux guest with CONFIG_VMGENID (drivers/virt/vmgenid.c, 5.18+) reseeds its random generator
// on that notify, in the kernel, before any user space of the clone runs, so clones of one
// snapshot never share /dev/urandom or getrandom() output even with no agent in the guest.
//
// The DSDT part: a device with _HID "VMGENCTR" and _CID "VM_GEN_COUNTER" (the ids the Linux
// driver matches) whose ADDR package gives the id's guest-physical address, and a Generic
// Event Device (ACPI0013) on GSI kVmGenerationIdGsi whose _EVT method notifies it (0x80). A
// hardware-reduced machine has no GPEs, so an interrupt into the GED is how an event reaches
// AML; Firecracker does the same.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "vmm/devices/irq_line.h"
#include "vmm/memory/guest_memory.h"

namespace wisp {

// The GED's interrupt: the last IOAPIC pin, clear of the ISA IRQs (COM1, virtio-mmio 5..15)
// and of the timer. Edge-triggered and active-high, as the GED's _CRS says.
constexpr uint32_t kVmGenerationIdGsi = 23;
constexpr size_t kVmGenerationIdBytes = 16;
// What _EVT passes to Notify: "device check"-style value 0x80, the one Linux's driver handles.
constexpr uint8_t kVmGenerationIdNotify = 0x80;

// The AML of both devices, to append to the DSDT body: one Scope (\_SB_). `id_addr` must be
// 8-byte aligned (the specification's rule); any 64-bit address fits (ADDR holds two 32-bit
// halves). Throws Error for an unaligned address or a GSI above 255.
std::vector<uint8_t> vm_generation_id_aml(uint64_t id_addr, uint32_t gsi);

// The live side: the id in guest memory and the GED's interrupt line.
// Thread rules: both methods run while no vCPU runs (boot and restore, on the building thread).
class VmGenerationId {
 public:
  // `mem` and `irq` outlive this object. Throws Error when the id's 16 bytes at `addr` are not
  // in guest memory.
  VmGenerationId(const GuestMemory& mem, GuestAddress addr, IrqLine& irq);

  // A first random id, at boot: the guest driver reads it when it starts, no interrupt.
  void write_first();
  // A new random id and the GED interrupt, after a restore and before the vCPUs run (KVM holds
  // the interrupt until the guest can take it). A guest that never set the GED up (no ACPI, or
  // a snapshot from before this device) has the pin masked and ignores both.
  void change();

  const std::array<uint8_t, kVmGenerationIdBytes>& id() const { return id_; }

 private:
  void write_random_id();

  const GuestMemory& mem_;
  const GuestAddress addr_;
  IrqLine& irq_;
  std::array<uint8_t, kVmGenerationIdBytes> id_{};
};

}  // namespace wisp
