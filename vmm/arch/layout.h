// Where the VMM puts things in guest-physical memory at boot (x86_64), and the interrupt
// controllers' addresses and ids that the boot code and both firmware tables (MP table in boot/,
// ACPI in acpi/) must agree on. Everything below 1 MiB is chosen to stay clear of what Linux
// reserves early: the zero page, command line, GDT and boot page tables are in the first
// 640 KiB; the MP table sits at the start of the EBDA, the ACPI tables in the BIOS area.
#pragma once

#include <cstdint>

namespace wisp::layout {

constexpr uint64_t kGdtAddr = 0x500;
constexpr uint64_t kZeroPageAddr = 0x7000;  // struct boot_params
constexpr uint64_t kBootStackTop = 0x8ff0;  // grows down towards the zero page's end
constexpr uint64_t kPml4Addr = 0x9000;
constexpr uint64_t kPdptAddr = 0xa000;
constexpr uint64_t kPdAddr = 0xb000;  // one PD: identity-maps 1 GiB with 2 MiB pages
constexpr uint64_t kCmdlineAddr = 0x20000;
constexpr uint64_t kCmdlineMax = 0x10000;           // hard cap, before the kernel's own limit
constexpr uint64_t kEbdaStart = 0x9fc00;            // MP table lives here
constexpr uint64_t kHighMemStart = 0x100000;        // 1 MiB: RAM above the legacy hole
constexpr uint64_t kDefaultKernelLoad = 0x1000000;  // 16 MiB

// The BIOS read-only area that Linux scans for "RSD PTR " (16-byte steps through
// 0xE0000-0xFFFFF), inside the e820-reserved [kEbdaStart, kHighMemStart).
constexpr uint64_t kAcpiTablesAddr = 0xe0000;
// The VM generation id (acpi/vm_generation_id.h): 16 bytes in the same reserved area, far above
// the tables' end, below 0xF0000 where Linux scans for an MP table signature (random bytes
// must not be mistaken for one). Fixed, so a restore finds it without saved state.
constexpr uint64_t kVmGenerationIdAddr = 0xef000;

// KVM's x86 in-kernel irqchip needs three pages for a TSS and one for an identity map,
// inside the 32-bit MMIO hole where no RAM is.
constexpr uint64_t kKvmIdentityMapAddr = 0xfeffc000;
constexpr uint64_t kKvmTssAddr = 0xfeffd000;

constexpr uint64_t kIoapicAddr = 0xfec00000;
constexpr uint64_t kLapicAddr = 0xfee00000;

// xAPIC ids are 8 bits: CPU n has id n, the IOAPIC takes the id after the last CPU, and 255
// means "all processors". So the firmware tables describe at most 254 vCPUs.
constexpr uint32_t kMaxCpus = 254;
constexpr uint8_t ioapic_id(uint32_t num_cpus) { return static_cast<uint8_t>(num_cpus); }

}  // namespace wisp::layout
