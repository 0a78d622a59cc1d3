// The CPU state Linux's 64-bit boot protocol asks for: a flat GDT with __BOOT_CS (0x10) and
// __BOOT_DS (0x18), identity-mapped page tables covering the kernel, zero page and command line,
// long mode on, interrupts off, %rsi pointing at the zero page.
#pragma once

#include <cstdint>

#include "vmm/kvm/cpu_types.h"
#include "vmm/memory/guest_memory.h"

namespace wisp {

// Packs a segment into an 8-byte GDT descriptor (used for the table and checked in tests).
uint64_t gdt_descriptor(const Segment& s);

// Writes the GDT and page tables into guest memory; returns the register state to enter `entry`
// with `boot_params` in %rsi.
LongModeEntry setup_long_mode(const GuestMemory& mem, uint64_t entry, uint64_t boot_params);

}  // namespace wisp
