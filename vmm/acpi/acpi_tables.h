// Minimal hardware-reduced ACPI for x86 microVMs, as Firecracker and Cloud Hypervisor build it:
// RSDP -> XSDT -> {FADT -> DSDT, MADT}. Stock distribution kernels (CONFIG_X86_MPPARSE off,
// CONFIG_ACPI on) ignore the MP table and learn their CPUs and IOAPIC only from the MADT; the
// FADT's sleep registers and the DSDT's \_S5_ object are what let them power off.
//
// "Hardware-reduced" (FADT flag HW_REDUCED_ACPI) means no PM1 event/control blocks, no PM timer,
// no GPEs and no SCI: the guest needs no ACPI hardware beyond PmControl's two ports.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/acpi/pm_control.h"
#include "vmm/acpi/vm_generation_id.h"
#include "vmm/arch/layout.h"
#include "vmm/devices/i8042.h"
#include "vmm/memory/guest_memory.h"

namespace wisp {

// Same limit as the MP table: 8-bit xAPIC ids, and 255 is the MADT's "all processors".
constexpr uint32_t kAcpiMaxCpus = layout::kMaxCpus;

struct AcpiConfig {
  uint32_t num_cpus = 1;  // Local APIC ids 0..num_cpus-1, CPU 0 the boot processor
  // Keep equal to the MP table's IOAPIC id (num_cpus) so both descriptions agree.
  uint8_t ioapic_id = 1;
  uint32_t ioapic_addr = static_cast<uint32_t>(layout::kIoapicAddr);
  uint32_t lapic_addr = static_cast<uint32_t>(layout::kLapicAddr);
  uint16_t sleep_control_port = PmControl::kSleepControlPort;
  uint16_t sleep_status_port = PmControl::kSleepStatusPort;
  // FADT RESET_REG: "write 0xFE to the i8042 command port", the pulse-reset command our I8042
  // turns into a reset exit. Gives reboot through ACPI (Linux's default reboot=a) the same path
  // as reboot=k.
  uint16_t reset_port = I8042::kCommandPort;
  uint8_t reset_value = 0xfe;
  // The VM generation id device (vm_generation_id.h): where its 16 bytes are and the GED's GSI.
  uint64_t vm_generation_id_addr = layout::kVmGenerationIdAddr;
  uint32_t vm_generation_id_gsi = kVmGenerationIdGsi;
};

// Returns the tables to copy to guest-physical `base` as one blob, the RSDP first (so the RSDP
// address is `base`, to pass in boot_params.acpi_rsdp_addr). Every table carries its own
// checksum and the absolute guest addresses of the tables it points to.
// Throws Error when num_cpus is 0 or above kAcpiMaxCpus, when `base` is not 16-byte aligned
// (the RSDP scan only looks there), when the blob would reach above 4 GiB (the FADT's DSDT
// pointer is 32-bit) or over the VM generation id.
std::vector<uint8_t> build_acpi_tables(uint64_t base, const AcpiConfig& config);

// Builds the tables for a machine of `num_cpus` vCPUs (IOAPIC id as in the MP table) and copies
// them to layout::kAcpiTablesAddr, the address boot_params.acpi_rsdp_addr then names. Throws
// Error as build_acpi_tables does, or when guest memory does not reach that far.
void write_acpi_tables(const GuestMemory& mem, uint32_t num_cpus);

}  // namespace wisp
