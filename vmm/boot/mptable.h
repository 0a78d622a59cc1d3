// The Intel MultiProcessor Specification 1.4 table that tells a guest without ACPI how many
// CPUs it has, where the IOAPIC is and how ISA IRQs are wired to it.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/arch/layout.h"

namespace wisp {

// Max vCPUs the table can describe: APIC ids are 8 bits and the IOAPIC takes the id after the
// last CPU.
constexpr uint32_t kMpTableMaxCpus = layout::kMaxCpus;

// Returns the bytes to place at guest-physical `base` (floating pointer, then config table).
// Throws Error when `num_cpus` is 0 or above kMpTableMaxCpus.
std::vector<uint8_t> build_mptable(uint64_t base, uint32_t num_cpus);

}  // namespace wisp
